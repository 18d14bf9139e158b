// CUDA twins of the element-wise CPU kernels (kernels/cpu/kernels.cc).
#include <cuda_runtime.h>

#include "kernels/cuda/kernels.h"

namespace cohort::kernels::cuda {
namespace {

constexpr int kThreads = 256;
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

__global__ void BiasActKernel(const float* x, const float* bias, float* y, int64_t rows,
                              int64_t cols, Activation act) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float z = x[i] + bias[i % cols];
    y[i] = act == Activation::kRelu ? fmaxf(z, 0.0f) : act == Activation::kGelu ? GeluDev(z) : z;
  }
}

__global__ void ActBackwardKernel(const float* z, const float* dy, float* dz, int64_t n,
                                  Activation act) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = dy[i];
    dz[i] = act == Activation::kRelu   ? (z[i] > 0.0f ? g : 0.0f)
            : act == Activation::kGelu ? g * GeluGradDev(z[i])
                                       : g;
  }
}

__global__ void SgdKernel(float* p, const float* grad, float* buf, int64_t n, float lr, float mu,
                          float wd, bool nesterov, bool first) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = grad[i] + wd * p[i];
    if (mu == 0.0f) {
      p[i] -= lr * g;
      continue;
    }
    const float b = first ? g : mu * buf[i] + g;
    buf[i] = b;
    p[i] -= lr * (nesterov ? g + mu * b : b);
  }
}

int Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

}  // namespace

void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                    Activation act) {
  BiasActKernel<<<Blocks(rows * cols), kThreads>>>(x, bias, y, rows, cols, act);
}

void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n, Activation act) {
  ActBackwardKernel<<<Blocks(n), kThreads>>>(z_or_y, dy, dz, n, act);
}

void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                       const SgdOptions& opt, bool first_step) {
  SgdKernel<<<Blocks(n), kThreads>>>(param, grad, momentum_buf, n, opt.lr, opt.momentum,
                                     opt.weight_decay, opt.nesterov, first_step);
}

}  // namespace cohort::kernels::cuda
