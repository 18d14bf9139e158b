// CUDA twins of the GPT-2 kernels (kernels/cpu/transformer.cc): see
// kernels/cuda/transformer.h for where they differ.
#include <cuda_runtime.h>

#include <cfloat>

#include "core/check.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/transformer.h"

namespace cohort::kernels::cuda {
namespace {

using internal::AfterLaunch;
using internal::Blocks;
using internal::kThreads;

__device__ int64_t GlobalThread() { return blockIdx.x * int64_t{blockDim.x} + threadIdx.x; }
__device__ int64_t GridThreads() { return int64_t{gridDim.x} * blockDim.x; }

template <class T>
__device__ T WarpSum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the block (blockDim.x a multiple of 32, at most 1024);
// every thread gets the result. `smem` holds 32 values.
template <class T, bool kMax>
__device__ T BlockReduce(T v, T* smem) {
  v = kMax ? WarpMax(v) : WarpSum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // smem may still be read by a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? smem[lane] : (kMax ? T(-FLT_MAX) : T(0));
  return kMax ? WarpMax(v) : WarpSum(v);
}

// Kernels that give each row to one warp run 8 warps a block.
constexpr int kWarpsPerBlock = 8;
unsigned WarpRowBlocks(int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}
__device__ int64_t WarpRow() { return blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32; }

// ---- embedding ---------------------------------------------------------------

__global__ void EmbeddingForwardKernel(const int32_t* tokens, const float* wte, const float* wpe,
                                       float* out, int64_t T, int64_t C, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const int64_t bt = i / C, c = i % C;
    out[i] = wte[int64_t{tokens[bt]} * C + c] + wpe[(bt % T) * C + c];
  }
}

__global__ void EmbeddingBackwardWteKernel(const float* dout, const int32_t* tokens, float* dwte,
                                           int64_t C, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    atomicAdd(dwte + int64_t{tokens[i / C]} * C + i % C, dout[i]);
  }
}

// dwpe[t, c] += sum_b dout[b, t, c], b in order.
__global__ void EmbeddingBackwardWpeKernel(const float* dout, float* dwpe, int64_t B, int64_t T,
                                           int64_t C) {
  for (int64_t i = GlobalThread(); i < T * C; i += GridThreads()) {
    float s = 0.0f;
    for (int64_t b = 0; b < B; ++b) s += dout[b * T * C + i];
    dwpe[i] += s;
  }
}

// ---- LayerNorm ---------------------------------------------------------------

__global__ void LayerNormForwardKernel(const float* x, const float* w, const float* b, float* y,
                                       float* mean, float* rstd, int64_t rows, int64_t C,
                                       float eps) {
  const int64_t r = WarpRow();
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* xr = x + r * C;
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += xr[c];
  const float m = WarpSum(s) / static_cast<float>(C);
  float v = 0.0f;
  for (int64_t c = lane; c < C; c += 32) v += (xr[c] - m) * (xr[c] - m);
  const float rs = 1.0f / sqrtf(WarpSum(v) / static_cast<float>(C) + eps);
  float* yr = y + r * C;
  for (int64_t c = lane; c < C; c += 32) yr[c] = (xr[c] - m) * rs * w[c] + b[c];
  if (lane == 0) {
    mean[r] = m;
    rstd[r] = rs;
  }
}

// dx += rstd (g - mean(g) - xhat mean(g xhat)), g = dy w: one warp a row.
__global__ void LayerNormBackwardDxKernel(const float* dy, const float* x, const float* w,
                                          const float* mean, const float* rstd, float* dx,
                                          int64_t rows, int64_t C) {
  const int64_t r = WarpRow();
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* dyr = dy + r * C;
  const float* xr = x + r * C;
  const float m = mean[r], s = rstd[r];
  float g = 0.0f, gx = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float gc = dyr[c] * w[c];
    g += gc;
    gx += gc * ((xr[c] - m) * s);
  }
  const float g_mean = WarpSum(g) / static_cast<float>(C);
  const float gx_mean = WarpSum(gx) / static_cast<float>(C);
  float* dxr = dx + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    dxr[c] += s * (dyr[c] * w[c] - g_mean - (xr[c] - m) * s * gx_mean);
  }
}

// dw[c] += sum_r dy xhat, db[c] += sum_r dy: a 32 x 16 block owns 32
// columns and walks every row (fixed order: deterministic).
constexpr int kLnRowThreads = 16;
__global__ void LayerNormBackwardDwDbKernel(const float* dy, const float* x, const float* mean,
                                            const float* rstd, float* dw, float* db, int64_t rows,
                                            int64_t C) {
  __shared__ float part_w[kLnRowThreads][33];
  __shared__ float part_b[kLnRowThreads][33];
  const int64_t c = blockIdx.x * int64_t{32} + threadIdx.x;
  float aw = 0.0f, ab = 0.0f;
  if (c < C) {
    for (int64_t r = threadIdx.y; r < rows; r += kLnRowThreads) {
      const float d = dy[r * C + c];
      aw += d * ((x[r * C + c] - mean[r]) * rstd[r]);
      ab += d;
    }
  }
  part_w[threadIdx.y][threadIdx.x] = aw;
  part_b[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float sw = 0.0f, sb = 0.0f;
    for (int i = 0; i < kLnRowThreads; ++i) {
      sw += part_w[i][threadIdx.x];
      sb += part_b[i][threadIdx.x];
    }
    dw[c] += sw;
    db[c] += sb;
  }
}

// ---- residual ------------------------------------------------------------------

__global__ void ResidualAddKernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) out[i] = a[i] + b[i];
}

// ---- attention -----------------------------------------------------------------

// In place over rows of T scores (row index r: position t = r % T): softmax
// over 0..t, zeros after. One warp a row.
__global__ void CausalSoftmaxKernel(float* att, int64_t rows, int64_t T) {
  const int64_t r = WarpRow();
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const int64_t t = r % T;
  float* row = att + r * T;
  float mx = -FLT_MAX;
  for (int64_t j = lane; j <= t; j += 32) mx = fmaxf(mx, row[j]);
  mx = WarpMax(mx);
  float sum = 0.0f;
  for (int64_t j = lane; j <= t; j += 32) {
    const float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.0f / WarpSum(sum);
  for (int64_t j = lane; j < T; j += 32) row[j] = j <= t ? row[j] * inv : 0.0f;
}

// In place over one head's T x T datt: ds = att (datt - rowsum(att datt)) *
// scale on the causal part, 0 elsewhere. One warp a row.
__global__ void CausalSoftmaxBackwardKernel(const float* att, float* ds, int64_t T, float scale) {
  const int64_t t = WarpRow();
  if (t >= T) return;
  const int lane = threadIdx.x % 32;
  const float* a = att + t * T;
  float* d = ds + t * T;
  float dot = 0.0f;
  for (int64_t j = lane; j <= t; j += 32) dot += a[j] * d[j];
  dot = WarpSum(dot);
  for (int64_t j = lane; j < T; j += 32) d[j] = j <= t ? a[j] * (d[j] - dot) * scale : 0.0f;
}

// ---- cross-entropy -------------------------------------------------------------

// One block a row: row_loss[row] = log(sum exp(l - max)) + max - l[target];
// dlogits (may be logits; may be null) = softmax * grad_scale - onehot * grad_scale.
__global__ void CrossEntropyKernel(const float* logits, const int32_t* targets, float* dlogits,
                                   int64_t V, float grad_scale, double* row_loss) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const float* l = logits + row * V;
  const int32_t target = targets[row];
  const float target_logit = l[target];
  float mx = -FLT_MAX;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) mx = fmaxf(mx, l[c]);
  mx = BlockReduce<float, true>(mx, smem);
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) sum += expf(l[c] - mx);
  sum = BlockReduce<float, false>(sum, smem);  // ends with every read of l done
  if (threadIdx.x == 0) row_loss[row] = log(static_cast<double>(sum)) + mx - target_logit;
  if (dlogits == nullptr) return;
  float* d = dlogits + row * V;
  const float f = grad_scale / sum;
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
    d[c] = expf(l[c] - mx) * f - (c == target ? grad_scale : 0.0f);
  }
}

// *out = float(sum_i parts[i] / divisor), one block of 1024 threads, fixed order.
__global__ void SumDoublesKernel(const double* parts, int64_t n, double divisor, float* out) {
  __shared__ double smem[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += parts[i];
  s = BlockReduce<double, false>(s, smem);
  if (threadIdx.x == 0) *out = static_cast<float>(s / divisor);
}

// ---- sum of squares ------------------------------------------------------------

// parts[block] = sum of x[i]^2 over the block's grid-stride share, in double.
__global__ void SumSquaresKernel(const float* x, int64_t n, double* parts) {
  __shared__ double smem[32];
  double s = 0.0;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const double v = x[i];
    s += v * v;
  }
  s = BlockReduce<double, false>(s, smem);
  if (threadIdx.x == 0) parts[blockIdx.x] = s;
}

unsigned RowThreads(int64_t cols) { return cols >= 1024 ? 512 : cols >= 256 ? 256 : 64; }

// Stream-ordered device scratch of `n` doubles; null (and the error
// recorded) when the allocation fails.
double* ScratchDoubles(int64_t n, const char* where) {
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, static_cast<size_t>(n) * sizeof(double), Stream());
  internal::RecordCuda(where, e);
  return e == cudaSuccess ? static_cast<double*>(p) : nullptr;
}
void FreeScratch(void* p, const char* where) {
  internal::RecordCuda(where, cudaFreeAsync(p, Stream()));
}

}  // namespace

void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                      int64_t B, int64_t T, int64_t C) {
  const int64_t n = B * T * C;
  if (n == 0) return;
  EmbeddingForwardKernel<<<Blocks(n), kThreads, 0, Stream()>>>(tokens, wte, wpe, out, T, C, n);
  AfterLaunch("EmbeddingForward");
}

void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                       int64_t B, int64_t T, int64_t C) {
  const int64_t n = B * T * C;
  if (n == 0) return;
  EmbeddingBackwardWteKernel<<<Blocks(n), kThreads, 0, Stream()>>>(dout, tokens, dwte, C, n);
  AfterLaunch("EmbeddingBackward(wte)");
  EmbeddingBackwardWpeKernel<<<Blocks(T * C), kThreads, 0, Stream()>>>(dout, dwpe, B, T, C);
  AfterLaunch("EmbeddingBackward(wpe)");
}

void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                      float* rstd, int64_t rows, int64_t C, float eps) {
  if (rows == 0) return;
  LayerNormForwardKernel<<<WarpRowBlocks(rows), 32 * kWarpsPerBlock, 0, Stream()>>>(
      x, w, b, y, mean, rstd, rows, C, eps);
  AfterLaunch("LayerNormForward");
}

void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                       const float* rstd, float* dx, float* dw, float* db, int64_t rows,
                       int64_t C) {
  if (rows == 0 || C == 0) return;
  LayerNormBackwardDxKernel<<<WarpRowBlocks(rows), 32 * kWarpsPerBlock, 0, Stream()>>>(
      dy, x, w, mean, rstd, dx, rows, C);
  AfterLaunch("LayerNormBackward(dx)");
  LayerNormBackwardDwDbKernel<<<static_cast<unsigned>((C + 31) / 32), dim3(32, kLnRowThreads), 0,
                                Stream()>>>(dy, x, mean, rstd, dw, db, rows, C);
  AfterLaunch("LayerNormBackward(dw, db)");
}

void ResidualAdd(const float* a, const float* b, float* out, int64_t n) {
  if (n == 0) return;
  ResidualAddKernel<<<Blocks(n), kThreads, 0, Stream()>>>(a, b, out, n);
  AfterLaunch("ResidualAdd");
}

void GeluForward(const float* x, float* y, int64_t n) {
  cuda::ActForward(x, y, n, Activation::kGelu);
}

void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  cuda::ActBackward(x, dy, dx, n, Activation::kGelu);
}

// Per head h, batched over b (strides T*3C in qkv, NH*T*T in att, T*C in out):
//   att = q k^T / sqrt(hs), then the causal softmax over all rows, then
//   out = att v.
void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                      int64_t NH) {
  if (B == 0 || T == 0) return;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  for (int64_t h = 0; h < NH; ++h) {
    const float* q = qkv + h * hs;
    internal::GemmStridedBatched(false, true, T, T, hs, scale, q, C3, T * C3, q + C, C3, T * C3,
                                 0.0f, att + h * T * T, T, NH * T * T, B);
  }
  const int64_t rows = B * NH * T;
  CausalSoftmaxKernel<<<WarpRowBlocks(rows), 32 * kWarpsPerBlock, 0, Stream()>>>(att, rows, T);
  AfterLaunch("AttentionForward(softmax)");
  for (int64_t h = 0; h < NH; ++h) {
    internal::GemmStridedBatched(false, false, T, hs, T, 1.0f, att + h * T * T, T, NH * T * T,
                                 qkv + 2 * C + h * hs, C3, T * C3, 0.0f, out + h * hs, C, T * C, B);
  }
}

// dv = att^T dout_h batched over b per head; then per (b, h):
//   ds = dout_h v^T, ds = att (ds - rowsum(att ds)) / sqrt(hs),
//   dq = ds k, dk = ds^T q.
void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                       float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH) {
  if (B == 0 || T == 0) return;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  for (int64_t h = 0; h < NH; ++h) {
    internal::GemmStridedBatched(true, false, T, hs, T, 1.0f, att + h * T * T, T, NH * T * T,
                                 dout + h * hs, C, T * C, 0.0f, dqkv + 2 * C + h * hs, C3, T * C3,
                                 B);
  }
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const float* q = qkv + b * T * C3 + h * hs;
      const float* g = dout + b * T * C + h * hs;
      const float* a = att + (b * NH + h) * T * T;
      float* dq = dqkv + b * T * C3 + h * hs;
      Gemm(false, true, T, T, hs, 1.0f, g, C, q + 2 * C, C3, 0.0f, scratch, T);
      CausalSoftmaxBackwardKernel<<<WarpRowBlocks(T), 32 * kWarpsPerBlock, 0, Stream()>>>(
          a, scratch, T, scale);
      AfterLaunch("AttentionBackward(softmax)");
      Gemm(false, false, T, hs, T, 1.0f, scratch, T, q + C, C3, 0.0f, dq, C3);
      Gemm(true, false, T, hs, T, 1.0f, scratch, T, q, C3, 0.0f, dq + C, C3);
    }
  }
}

void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                       int64_t V, float grad_scale, float* mean_loss) {
  if (rows == 0) {
    internal::RecordCuda("CrossEntropyFused",
                         cudaMemsetAsync(mean_loss, 0, sizeof(float), Stream()));
    return;
  }
  COHORT_CHECK(rows < (int64_t{1} << 31)) << "CrossEntropyFused: too many rows: " << rows;
  double* row_loss = ScratchDoubles(rows, "CrossEntropyFused(cudaMallocAsync)");
  if (row_loss == nullptr) return;
  CrossEntropyKernel<<<static_cast<unsigned>(rows), RowThreads(V), 0, Stream()>>>(
      logits, targets, dlogits, V, grad_scale, row_loss);
  AfterLaunch("CrossEntropyFused");
  SumDoublesKernel<<<1, 1024, 0, Stream()>>>(row_loss, rows, static_cast<double>(rows), mean_loss);
  AfterLaunch("CrossEntropyFused(mean)");
  FreeScratch(row_loss, "CrossEntropyFused(cudaFreeAsync)");
}

void SumSquares(const float* x, int64_t n, float* out) {
  const unsigned blocks = Blocks(n) > 1024 ? 1024 : Blocks(n);
  double* parts = ScratchDoubles(blocks, "SumSquares(cudaMallocAsync)");
  if (parts == nullptr) return;
  SumSquaresKernel<<<blocks, kThreads, 0, Stream()>>>(x, n, parts);
  AfterLaunch("SumSquares");
  SumDoublesKernel<<<1, 1024, 0, Stream()>>>(parts, blocks, 1.0, out);
  AfterLaunch("SumSquares(total)");
  FreeScratch(parts, "SumSquares(cudaFreeAsync)");
}

}  // namespace cohort::kernels::cuda
