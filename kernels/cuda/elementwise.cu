// CUDA twins of the element-wise and row-wise CPU kernels
// (kernels/cpu/kernels.cc): bias + activation, bias gradient, softmax
// cross-entropy, scaling with the inf/nan check, and the 16-bit casts.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "core/check.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/kernels.h"

namespace cohort::kernels::cuda {
namespace {

using internal::AfterLaunch;
using internal::Blocks;
using internal::kThreads;

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;

__device__ float GeluDev(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}
__device__ float GeluGradDev(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  const float t = tanhf(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCoeff * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}
__device__ float Act(float z, Activation act) {
  return act == Activation::kRelu ? fmaxf(z, 0.0f) : act == Activation::kGelu ? GeluDev(z) : z;
}

__device__ int64_t GlobalThread() { return blockIdx.x * int64_t{blockDim.x} + threadIdx.x; }
__device__ int64_t GridThreads() { return int64_t{gridDim.x} * blockDim.x; }

// ---- bias + activation ---------------------------------------------------------

// One grid row of blocks per matrix row keeps the bias index a plain column.
__global__ void BiasActKernel(const float* x, const float* bias, float* y, int64_t rows,
                              int64_t cols, Activation act) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    for (int64_t c = GlobalThread(); c < cols; c += GridThreads())
      yr[c] = Act(xr[c] + bias[c], act);
  }
}

__global__ void ActKernel(const float* z, float* y, int64_t n, Activation act) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = Act(z[i], act);
}

__global__ void ActBackwardKernel(const float* z, const float* dy, float* dz, int64_t n,
                                  Activation act) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float g = dy[i];
    dz[i] = act == Activation::kRelu   ? (z[i] > 0.0f ? g : 0.0f)
            : act == Activation::kGelu ? g * GeluGradDev(z[i])
                                       : g;
  }
}

// Column sums: a 32 x 8 block owns 32 columns of a slab of kBiasRows rows;
// threads sum down the slab (coalesced along the row), the block sums its 8
// partials in shared memory and adds the result to db atomically.
constexpr int kBiasRows = 64;
__global__ void BiasGradKernel(const float* dz, float* db, int64_t rows, int64_t cols) {
  __shared__ float part[8][33];
  const int64_t c = blockIdx.x * int64_t{32} + threadIdx.x;
  const int64_t r0 = blockIdx.y * int64_t{kBiasRows};
  float acc = 0.0f;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < rows && r < r0 + kBiasRows; r += 8)
      acc += dz[r * cols + c];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float s = 0.0f;
    for (int i = 0; i < 8; ++i) s += part[i][threadIdx.x];
    atomicAdd(db + c, s);
  }
}

// ---- softmax cross-entropy -----------------------------------------------------

template <bool kMax>
__device__ float BlockReduce(float v, float* smem) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // smem may still be read by a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? smem[lane] : (kMax ? -FLT_MAX : 0.0f);
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  return v;
}

// One block per row. Adds loss_row / rows to *mean_loss (zeroed before).
__global__ void SoftmaxXentForwardKernel(const float* logits, const int32_t* labels, float* probs,
                                         int64_t cols, float inv_rows, float* mean_loss) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const float* l = logits + row * cols;
  float* p = probs + row * cols;
  float mx = -FLT_MAX;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, l[c]);
  mx = BlockReduce<true>(mx, smem);
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float e = expf(l[c] - mx);
    p[c] = e;
    sum += e;
  }
  sum = BlockReduce<false>(sum, smem);
  const float inv = 1.0f / sum;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) p[c] *= inv;
  if (threadIdx.x == 0) atomicAdd(mean_loss, (logf(sum) + mx - l[labels[row]]) * inv_rows);
}

__global__ void SoftmaxXentBackwardKernel(const float* probs, const int32_t* labels, float* dlogits,
                                          int64_t cols, float scale) {
  const int64_t row = blockIdx.x;
  const int32_t label = labels[row];
  const float* p = probs + row * cols;
  float* d = dlogits + row * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    d[c] = p[c] * scale - (c == label ? scale : 0.0f);
}

// ---- scaling and casts (vectorised: 4 elements a thread where aligned) ----------

bool Aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

__global__ void ScaleKernel(float* y, int64_t n, float s, int32_t* found_nonfinite, bool vec) {
  bool bad = false;
  int64_t done = 0;
  if (vec) {
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = GlobalThread(); i < n / 4; i += GridThreads()) {
      float4 v = y4[i];
      v.x *= s, v.y *= s, v.z *= s, v.w *= s;
      y4[i] = v;
      bad |= !(isfinite(v.x) && isfinite(v.y) && isfinite(v.z) && isfinite(v.w));
    }
    done = n / 4 * 4;
  }
  for (int64_t i = done + GlobalThread(); i < n; i += GridThreads()) {
    y[i] *= s;
    bad |= !isfinite(y[i]);
  }
  if (found_nonfinite != nullptr && __syncthreads_or(bad) && threadIdx.x == 0) *found_nonfinite = 1;
}

template <bool kBf16>
__device__ uint16_t ToHalf(float x) {
  if constexpr (kBf16) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  } else {
    return __half_as_ushort(__float2half_rn(x));
  }
}
template <bool kBf16>
__device__ float FromHalf(uint16_t h) {
  if constexpr (kBf16) {
    return __bfloat162float(__ushort_as_bfloat16(h));
  } else {
    return __half2float(__ushort_as_half(h));
  }
}

template <bool kBf16>
__global__ void CastFromFloatKernel(const float* in, uint16_t* out, int64_t n, float s, bool vec) {
  int64_t done = 0;
  if (vec) {
    for (int64_t i = GlobalThread(); i < n / 4; i += GridThreads()) {
      const float4 v = reinterpret_cast<const float4*>(in)[i];
      reinterpret_cast<ushort4*>(out)[i] =
          make_ushort4(ToHalf<kBf16>(v.x * s), ToHalf<kBf16>(v.y * s), ToHalf<kBf16>(v.z * s),
                       ToHalf<kBf16>(v.w * s));
    }
    done = n / 4 * 4;
  }
  for (int64_t i = done + GlobalThread(); i < n; i += GridThreads())
    out[i] = ToHalf<kBf16>(in[i] * s);
}

template <bool kBf16>
__global__ void CastToFloatKernel(const uint16_t* in, float* out, int64_t n, float s, bool vec) {
  int64_t done = 0;
  if (vec) {
    for (int64_t i = GlobalThread(); i < n / 4; i += GridThreads()) {
      const ushort4 v = reinterpret_cast<const ushort4*>(in)[i];
      reinterpret_cast<float4*>(out)[i] =
          make_float4(FromHalf<kBf16>(v.x) * s, FromHalf<kBf16>(v.y) * s, FromHalf<kBf16>(v.z) * s,
                      FromHalf<kBf16>(v.w) * s);
    }
    done = n / 4 * 4;
  }
  for (int64_t i = done + GlobalThread(); i < n; i += GridThreads())
    out[i] = FromHalf<kBf16>(in[i]) * s;
}

// Device scratch for the loss of the synchronous softmax forward: one float a
// thread, made on first use and kept (like the cuBLAS handle).
float* LossScratch() {
  thread_local float* p = nullptr;
  if (p == nullptr) internal::RecordCuda("cudaMalloc(loss)", cudaMalloc(&p, sizeof(float)));
  return p;
}

unsigned RowThreads(int64_t cols) { return cols >= 1024 ? 512 : cols >= 256 ? 256 : 64; }

}  // namespace

void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                    Activation act) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid(Blocks(cols) > 64 ? 64 : Blocks(cols),
                  static_cast<unsigned>(rows < 65535 ? rows : 65535));
  BiasActKernel<<<grid, kThreads, 0, Stream()>>>(x, bias, y, rows, cols, act);
  AfterLaunch("BiasActForward");
}

void ActForward(const float* z, float* y, int64_t n, Activation act) {
  if (n == 0) return;
  if (act == Activation::kNone) {
    if (y != z)
      internal::RecordCuda("ActForward", cudaMemcpyAsync(y, z, n * sizeof(float),
                                                         cudaMemcpyDeviceToDevice, Stream()));
    return;
  }
  ActKernel<<<Blocks(n), kThreads, 0, Stream()>>>(z, y, n, act);
  AfterLaunch("ActForward");
}

void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n, Activation act) {
  if (n == 0) return;
  ActBackwardKernel<<<Blocks(n), kThreads, 0, Stream()>>>(z_or_y, dy, dz, n, act);
  AfterLaunch("ActBackward");
}

void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  internal::RecordCuda("BiasGrad", cudaMemsetAsync(db, 0, cols * sizeof(float), Stream()));
  if (rows == 0) return;
  const int64_t slabs = (rows + kBiasRows - 1) / kBiasRows;
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32),
                  static_cast<unsigned>(slabs < 65535 ? slabs : 65535));
  COHORT_CHECK(slabs < 65535) << "BiasGrad: too many rows: " << rows;
  BiasGradKernel<<<grid, dim3(32, 8), 0, Stream()>>>(dz, db, rows, cols);
  AfterLaunch("BiasGrad");
}

void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                int64_t rows, int64_t cols, float* mean_loss) {
  internal::RecordCuda("SoftmaxCrossEntropyForward",
                       cudaMemsetAsync(mean_loss, 0, sizeof(float), Stream()));
  if (rows == 0) return;
  COHORT_CHECK(rows < (int64_t{1} << 31)) << rows;
  SoftmaxXentForwardKernel<<<static_cast<unsigned>(rows), RowThreads(cols), 0, Stream()>>>(
      logits, labels, probs, cols, 1.0f / static_cast<float>(rows), mean_loss);
  AfterLaunch("SoftmaxCrossEntropyForward");
}

double SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols) {
  float* d_loss = LossScratch();
  if (d_loss == nullptr) return 0.0;
  SoftmaxCrossEntropyForward(logits, labels, probs, rows, cols, d_loss);
  float loss = 0.0f;
  internal::RecordCuda(
      "SoftmaxCrossEntropyForward(copy)",
      cudaMemcpyAsync(&loss, d_loss, sizeof(float), cudaMemcpyDeviceToHost, Stream()));
  internal::RecordCuda("SoftmaxCrossEntropyForward(wait)", cudaStreamSynchronize(Stream()));
  return loss;
}

void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t cols, float scale) {
  if (rows == 0) return;
  SoftmaxXentBackwardKernel<<<static_cast<unsigned>(rows), RowThreads(cols), 0, Stream()>>>(
      probs, labels, dlogits, cols, scale);
  AfterLaunch("SoftmaxCrossEntropyBackward");
}

void Scale(float* y, int64_t n, float s) {
  if (n == 0) return;
  ScaleKernel<<<Blocks((n + 3) / 4), kThreads, 0, Stream()>>>(y, n, s, nullptr, Aligned(y, 16));
  AfterLaunch("Scale");
}

void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found_nonfinite) {
  if (n == 0) return;
  ScaleKernel<<<Blocks((n + 3) / 4), kThreads, 0, Stream()>>>(y, n, s, found_nonfinite,
                                                              Aligned(y, 16));
  AfterLaunch("ScaleCheckFinite");
}

void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale) {
  COHORT_CHECK(half == DType::kBF16 || half == DType::kF16) << DTypeName(half);
  if (n == 0) return;
  const bool vec = Aligned(in, 16) && Aligned(out, 8);
  auto* o = static_cast<uint16_t*>(out);
  if (half == DType::kBF16) {
    CastFromFloatKernel<true><<<Blocks((n + 3) / 4), kThreads, 0, Stream()>>>(in, o, n, scale, vec);
  } else {
    CastFromFloatKernel<false>
        <<<Blocks((n + 3) / 4), kThreads, 0, Stream()>>>(in, o, n, scale, vec);
  }
  AfterLaunch("CastFromFloat");
}

void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale) {
  COHORT_CHECK(half == DType::kBF16 || half == DType::kF16) << DTypeName(half);
  if (n == 0) return;
  const bool vec = Aligned(in, 8) && Aligned(out, 16);
  const auto* i = static_cast<const uint16_t*>(in);
  if (half == DType::kBF16) {
    CastToFloatKernel<true><<<Blocks((n + 3) / 4), kThreads, 0, Stream()>>>(i, out, n, scale, vec);
  } else {
    CastToFloatKernel<false><<<Blocks((n + 3) / 4), kThreads, 0, Stream()>>>(i, out, n, scale, vec);
  }
  AfterLaunch("CastToFloat");
}

}  // namespace cohort::kernels::cuda
