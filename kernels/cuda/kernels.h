#pragma once
// CUDA twins of kernels/cpu/kernels.h: same names and signatures, device
// pointers, launched on the current stream (the default stream until the GPU
// issue adds stream arguments). Compiled only when CUDA is found.
// So far: the element-wise ops; GEMM, softmax cross-entropy and the fused
// optimizers arrive with the GPU path.

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace cohort::kernels::cuda {

using cohort::kernels::Activation;

void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                    Activation act);
void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n, Activation act);
void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                       const SgdOptions& opt, bool first_step);

}  // namespace cohort::kernels::cuda
