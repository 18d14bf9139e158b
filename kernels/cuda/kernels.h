#pragma once
// CUDA twins of kernels/cpu/kernels.h: the same names and signatures, over
// device pointers (host arrays of device pointers for the multi-tensor
// kernels). Compiled only when CUDA is found; linked against cudart and cuBLAS,
// never the driver.
//
// Streams: every kernel is enqueued on the calling thread's current stream
// (SetStream; the legacy default stream until set) and returns without waiting
// for the device, except the SoftmaxCrossEntropyForward that returns the loss
// as a double, which waits for its own work. Like PyTorch's current stream,
// the setting is per host thread, so threads driving different streams do not
// race.
//
// Errors: a bad launch or a cuBLAS failure is recorded per thread; LastError()
// returns it (and cudaGetLastError's) and clears it. Kernels do not check
// their arguments beyond what the CPU twins check.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/status.h"
#include "kernels/cpu/kernels.h"

namespace cohort::kernels::cuda {

using cohort::kernels::Activation;
using cohort::kernels::AdamWOptions;
using cohort::kernels::AdamWTensor;
using cohort::kernels::SgdOptions;
using cohort::kernels::SgdTensor;

// The calling thread's stream for every kernel below (nullptr: the legacy
// default stream). The cuBLAS handle of the thread follows it.
void SetStream(cudaStream_t stream);
cudaStream_t Stream();

// The first error since the last call (a failed launch, a cuBLAS status, an
// asynchronous fault that cudaGetLastError reports), with where it happened;
// Ok when none. Clears it.
Status LastError();

// ---- Twins of kernels/cpu/kernels.h ------------------------------------------

// fp32 GEMM through cublasSgemm (strict fp32: no TF32).
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// cublasGemmEx, CUBLAS_COMPUTE_32F: 16-bit inputs on tensor cores, fp32
// accumulation, C in fp32 or the input type.
void GemmMixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               DType ab_type, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
               DType c_type, void* c, int64_t ldc);

void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                    Activation act);
void ActForward(const float* z, float* y, int64_t n, Activation act);
void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n, Activation act);
// Column sums, summed by atomics: the order of additions (and so the last
// bits) can change from run to run.
void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols);

// Waits for the device (it returns the loss to the host); prefer the overload
// that writes the mean loss to device memory inside a step.
double SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols);
void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                int64_t rows, int64_t cols, float* mean_loss);
void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t cols, float scale);

void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                       const SgdOptions& opt, bool first_step);
void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamWOptions& opt, int64_t step);
// `tensors` is a host array (of device pointers); it may be freed on return.
void MultiTensorSgdMomentumUpdate(const SgdTensor* tensors, int count, const SgdOptions& opt,
                                  bool first_step);
void MultiTensorAdamWUpdate(const AdamWTensor* tensors, int count, const AdamWOptions& opt,
                            int64_t step);

void Scale(float* y, int64_t n, float s);
// `found_nonfinite` is device memory.
void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found_nonfinite);
void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale);
void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale);

// `srcs`, `dsts` and `counts` are host arrays (of device pointers); one launch.
void Pack(const float* const* srcs, const int64_t* counts, int count, float* flat);
void Unpack(const float* flat, float* const* dsts, const int64_t* counts, int count);

}  // namespace cohort::kernels::cuda
