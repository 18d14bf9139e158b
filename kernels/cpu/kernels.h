#pragma once
// CPU kernels: one signature per op, over raw row-major fp32 arrays.
//
// Every kernel here has a CUDA twin in kernels/cuda/ with the same signature
// (namespace cohort::kernels::cuda) and a plain-loop reference in the tests.
// The caller owns every buffer; kernels allocate nothing and are thread-safe on
// disjoint outputs. Sizes are element counts. Shapes use (rows, cols) of
// row-major matrices: a batch of `rows` samples with `cols` features.

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace cohort::kernels {

// C = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or X^T.
// op(A) is m x k, op(B) is k x n, C is m x n. Leading dimensions are the row
// strides of the matrices as stored. Backed by OpenBLAS's cblas_sgemm.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

enum class Activation : uint8_t { kNone = 0, kRelu = 1, kGelu = 2 };

// y[r, c] = act(x[r, c] + bias[c]). `x` and `y` may alias (in place).
void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                    Activation act);

// y[i] = act(z[i]); y may alias z.
void ActForward(const float* z, float* y, int64_t n, Activation act);

// Given the pre-activation z = x + bias (for GELU) or the output y (for ReLU:
// y > 0 iff z > 0), and dy: writes dz = dy * act'(z), in place allowed
// (dz may alias dy). `z_or_y` is z for GELU and may be either for ReLU.
void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n, Activation act);

// db[c] = sum_r dz[r, c] (overwrites db).
void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols);

// GELU, tanh approximation (as in GPT-2 / PyTorch approximate="tanh"), and
// its derivative. tanh is fast_math::Tanh (within 1.2 ulp of the exact tanh,
// vectorised); BiasActForward, ActForward and ActBackward with kGelu give
// bitwise what these scalar functions give.
float Gelu(float x);
float GeluGrad(float x);

// Softmax cross-entropy over `rows` samples of `cols` classes. Writes the
// softmax probabilities to `probs` (rows x cols) and returns the mean loss
// over the rows. Labels must lie in [0, cols); the caller checks them.
// `probs` must not alias `logits`.
double SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols);
// dlogits = (probs - onehot(labels)) * scale; scale is 1/rows for a mean loss.
// `dlogits` may alias `probs`.
void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t cols, float scale);

struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;  // L2, added to the gradient (as torch.optim.SGD)
  bool nesterov = false;
};
// PyTorch semantics: g = grad + wd * p; buf = momentum * buf + g (buf = g on
// the first step, signalled by `first_step`); p -= lr * (nesterov ? g + momentum*buf : buf).
void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                       const SgdOptions& opt, bool first_step);

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;  // decoupled (Loshchilov & Hutter)
};
// One AdamW step; `step` counts from 1. m and v are the moment buffers.
void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamWOptions& opt, int64_t step);

// y *= s over n elements.
void Scale(float* y, int64_t n, float s);

// ---- Mixed precision -------------------------------------------------------

// C = alpha * op(A) * op(B) + beta * C with A and B in `ab_type` (kBF16, kF16
// or kF32) and C in `c_type` (kF32, or the same 16-bit type as A and B);
// products accumulate in fp32 and a 16-bit C is rounded once, to nearest
// even. Layout as Gemm. The CPU version widens op(A), op(B) (and a 16-bit C)
// to fp32 in temporaries it allocates, then calls Gemm: the one CPU kernel
// that allocates. Other type pairs abort (a caller bug).
void GemmMixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               DType ab_type, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
               DType c_type, void* c, int64_t ldc);

// out[i] = half(in[i] * scale), `half` kBF16 or kF16, rounded to nearest even
// (NaN stays NaN, fp16 overflows to +-inf), as core/dtype.h rounds.
void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale);
// out[i] = float(in[i]) * scale (the widening is exact).
void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale);

// Loss scaling: y[i] *= s, and *found_nonfinite = 1 if any y[i] * s is inf or
// NaN (it is never cleared here: the caller zeroes it once per step, so one
// flag covers every tensor of the step, as torch's GradScaler does).
void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found_nonfinite);

// ---- Many tensors at once --------------------------------------------------

// One tensor of a multi-tensor optimizer step. Pointers are owned by the
// caller; `n` elements each.
struct SgdTensor {
  float* param;
  const float* grad;
  float* momentum_buf;  // may be null when momentum == 0
  int64_t n;
};
struct AdamWTensor {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t n;
};
// The single-tensor updates above, applied to `count` tensors (the CUDA twin
// does them all in one launch per few thousand chunks of 64 Ki elements).
void MultiTensorSgdMomentumUpdate(const SgdTensor* tensors, int count, const SgdOptions& opt,
                                  bool first_step);
void MultiTensorAdamWUpdate(const AdamWTensor* tensors, int count, const AdamWOptions& opt,
                            int64_t step);

// Bucket packing: tensor i (counts[i] elements at srcs[i]) goes to
// flat[offset_i .. offset_i + counts[i]), offset_i = sum of counts before i;
// Unpack is the inverse. Tensors and the flat buffer must not overlap.
void Pack(const float* const* srcs, const int64_t* counts, int count, float* flat);
void Unpack(const float* flat, float* const* dsts, const int64_t* counts, int count);

// Softmax cross-entropy forward that stores the mean loss in *mean_loss
// instead of returning it (on the GPU, *mean_loss is device memory and
// nothing waits for the device).
void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                int64_t rows, int64_t cols, float* mean_loss);

}  // namespace cohort::kernels

namespace cohort::kernels {
// Threads OpenBLAS uses for GEMM in this process. Several ranks per host
// should share the cores (MEASURED.md: oversubscribing BLAS threads costs 2.5x).
void SetBlasThreads(int threads);
int BlasThreads();
}  // namespace cohort::kernels
