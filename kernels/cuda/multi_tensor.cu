// Multi-tensor apply: one launch updates many tensors (the fused SGD and
// AdamW steps, and bucket pack/unpack), the way apex's multi_tensor_apply does.
//
// The host cuts each tensor into chunks of kChunk elements and hands the
// kernel, as its parameter, a table of up to kMaxTensors tensors and up to
// kMaxBlocks (tensor, chunk) pairs: block b does chunk b. The table is about
// 14 KiB: kernel parameters over 4 KiB need CUDA 12.1 and Volta or newer,
// which CMAKE_CUDA_ARCHITECTURES (80, 90) guarantees. More tensors or chunks
// than a table holds take further launches on the same stream.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/internal.h"
#include "kernels/cuda/kernels.h"

namespace cohort::kernels::cuda {
namespace {

constexpr int kMaxTensors = 64;
constexpr int kMaxBlocks = 2048;
constexpr int64_t kChunk = 32768;  // a multiple of 4: chunks keep the tensor's alignment
constexpr int kMtThreads = 512;

template <int kDepth>
struct Table {
  float* ptrs[kDepth][kMaxTensors];
  int64_t sizes[kMaxTensors];
  uint8_t block_tensor[kMaxBlocks];
  int32_t block_chunk[kMaxBlocks];
};
static_assert(sizeof(Table<4>) < 32764, "kernel parameters are limited to 32764 bytes");

// Applies op(x) to every element index of the chunk, where x[d] is element i
// of list d; lists whose bit is set in Op::kWrites are stored back. Aligned
// chunks go 4 elements (one float4 per list) a thread at a time.
template <int kDepth, class Op>
__global__ void __launch_bounds__(kMtThreads)
    MultiTensorKernel(const __grid_constant__ Table<kDepth> t, const Op op) {
  const int tensor = t.block_tensor[blockIdx.x];
  const int64_t start = int64_t{t.block_chunk[blockIdx.x]} * kChunk;
  const int64_t rest = t.sizes[tensor] - start;
  const int64_t n = rest < kChunk ? rest : kChunk;
  float* p[kDepth];
  bool aligned = true;
  for (int d = 0; d < kDepth; ++d) {
    p[d] = t.ptrs[d][tensor] + start;
    aligned &= reinterpret_cast<uintptr_t>(p[d]) % 16 == 0;
  }
  int64_t done = 0;
  if (aligned) {
    for (int64_t i = threadIdx.x; i < n / 4; i += blockDim.x) {
      float4 v[kDepth];
      for (int d = 0; d < kDepth; ++d) v[d] = reinterpret_cast<const float4*>(p[d])[i];
      for (int lane = 0; lane < 4; ++lane) {
        float x[kDepth];
        for (int d = 0; d < kDepth; ++d) x[d] = reinterpret_cast<float*>(&v[d])[lane];
        op(x);
        for (int d = 0; d < kDepth; ++d) reinterpret_cast<float*>(&v[d])[lane] = x[d];
      }
      for (int d = 0; d < kDepth; ++d)
        if (Op::kWrites & (1 << d)) reinterpret_cast<float4*>(p[d])[i] = v[d];
    }
    done = n / 4 * 4;
  }
  for (int64_t i = done + threadIdx.x; i < n; i += blockDim.x) {
    float x[kDepth];
    for (int d = 0; d < kDepth; ++d) x[d] = p[d][i];
    op(x);
    for (int d = 0; d < kDepth; ++d)
      if (Op::kWrites & (1 << d)) p[d][i] = x[d];
  }
}

// get(i, ptrs) fills tensor i's kDepth pointers and returns its size.
template <int kDepth, class Op, class Get>
void MultiTensorApply(int count, Get get, const Op& op, const char* where) {
  Table<kDepth> t;
  int nt = 0, nb = 0;
  auto flush = [&] {
    if (nb > 0) {
      MultiTensorKernel<kDepth, Op><<<nb, kMtThreads, 0, Stream()>>>(t, op);
      internal::AfterLaunch(where);
    }
    nt = 0;
    nb = 0;
  };
  for (int i = 0; i < count; ++i) {
    float* ptrs[kDepth];
    const int64_t n = get(i, ptrs);
    if (n <= 0) continue;
    auto add_tensor = [&] {
      for (int d = 0; d < kDepth; ++d) t.ptrs[d][nt] = ptrs[d];
      t.sizes[nt] = n;
      return nt++;
    };
    if (nt == kMaxTensors) flush();
    int slot = add_tensor();
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      if (nb == kMaxBlocks) {
        flush();
        slot = add_tensor();  // the rest of this tensor goes in the next launch
      }
      t.block_tensor[nb] = static_cast<uint8_t>(slot);
      t.block_chunk[nb] = static_cast<int32_t>(c);
      ++nb;
    }
  }
  flush();
}

struct AdamWOp {
  static constexpr int kWrites = 1 | 4 | 8;  // param, m, v
  float b1, b2, step_size, inv_sqrt_bc2, decay, eps;
  __device__ void operator()(float* x) const {
    const float g = x[1];
    const float m = b1 * x[2] + (1.0f - b1) * g;
    const float v = b2 * x[3] + (1.0f - b2) * g * g;
    x[2] = m;
    x[3] = v;
    x[0] = x[0] * decay - step_size * m / (sqrtf(v) * inv_sqrt_bc2 + eps);
  }
};

struct SgdMomentumOp {
  static constexpr int kWrites = 1 | 4;  // param, buf
  float lr, mu, wd;
  bool nesterov, first;
  __device__ void operator()(float* x) const {
    const float g = x[1] + wd * x[0];
    const float b = first ? g : mu * x[2] + g;
    x[2] = b;
    x[0] -= lr * (nesterov ? g + mu * b : b);
  }
};

struct SgdPlainOp {
  static constexpr int kWrites = 1;
  float lr, wd;
  __device__ void operator()(float* x) const { x[0] -= lr * (x[1] + wd * x[0]); }
};

struct CopyOp {
  static constexpr int kWrites = 2;  // list 0 -> list 1
  __device__ void operator()(float* x) const { x[1] = x[0]; }
};

}  // namespace

void MultiTensorAdamWUpdate(const AdamWTensor* tensors, int count, const AdamWOptions& opt,
                            int64_t step) {
  // The step's constants, as the CPU twin computes them.
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(opt.beta1), step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(opt.beta2), step));
  const AdamWOp op{
      opt.beta1, opt.beta2, opt.lr / bc1, 1.0f / std::sqrt(bc2), 1.0f - opt.lr * opt.weight_decay,
      opt.eps};
  MultiTensorApply<4>(
      count,
      [&](int i, float** p) {
        const AdamWTensor& t = tensors[i];
        p[0] = t.param, p[1] = const_cast<float*>(t.grad), p[2] = t.m, p[3] = t.v;
        return t.n;
      },
      op, "MultiTensorAdamWUpdate");
}

void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamWOptions& opt, int64_t step) {
  const AdamWTensor t{param, grad, m, v, n};
  cuda::MultiTensorAdamWUpdate(&t, 1, opt, step);
}

void MultiTensorSgdMomentumUpdate(const SgdTensor* tensors, int count, const SgdOptions& opt,
                                  bool first_step) {
  if (opt.momentum == 0.0f) {
    MultiTensorApply<2>(
        count,
        [&](int i, float** p) {
          p[0] = tensors[i].param, p[1] = const_cast<float*>(tensors[i].grad);
          return tensors[i].n;
        },
        SgdPlainOp{opt.lr, opt.weight_decay}, "MultiTensorSgdMomentumUpdate");
    return;
  }
  MultiTensorApply<3>(
      count,
      [&](int i, float** p) {
        const SgdTensor& t = tensors[i];
        p[0] = t.param, p[1] = const_cast<float*>(t.grad), p[2] = t.momentum_buf;
        return t.n;
      },
      SgdMomentumOp{opt.lr, opt.momentum, opt.weight_decay, opt.nesterov, first_step},
      "MultiTensorSgdMomentumUpdate");
}

void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                       const SgdOptions& opt, bool first_step) {
  const SgdTensor t{param, grad, momentum_buf, n};
  cuda::MultiTensorSgdMomentumUpdate(&t, 1, opt, first_step);
}

void Pack(const float* const* srcs, const int64_t* counts, int count, float* flat) {
  int64_t offset = 0;
  MultiTensorApply<2>(
      count,
      [&](int i, float** p) {
        p[0] = const_cast<float*>(srcs[i]), p[1] = flat + offset;
        offset += counts[i];
        return counts[i];
      },
      CopyOp{}, "Pack");
}

void Unpack(const float* flat, float* const* dsts, const int64_t* counts, int count) {
  int64_t offset = 0;
  MultiTensorApply<2>(
      count,
      [&](int i, float** p) {
        p[0] = const_cast<float*>(flat) + offset, p[1] = dsts[i];
        offset += counts[i];
        return counts[i];
      },
      CopyOp{}, "Unpack");
}

}  // namespace cohort::kernels::cuda
