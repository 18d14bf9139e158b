#pragma once
// CUDA twins of kernels/cpu/transformer.h: the same names, signatures and
// meanings, over device pointers. Streams and errors as kernels/cuda/kernels.h:
// every call is enqueued on the calling thread's stream (SetStream) and
// returns without waiting; failures are recorded for LastError(). Checked
// against the CPU kernels in tests/gpu/kernels_gpu_test.cc.
//
// Differences from the CPU kernels, all within fp32 rounding:
// - EmbeddingBackward adds into dwte with atomics (a token repeated in the
//   batch is added in an order that can change from run to run, so the last
//   bits can too); dwpe is summed over b in order, deterministically.
// - LayerNormBackward, CrossEntropyFused and SumSquares are deterministic
//   (fixed reduction trees, no atomics).
// - CrossEntropyFused and SumSquares take a little device scratch (rows
//   doubles; at most 1024 doubles) from the stream-ordered allocator
//   (cudaMallocAsync / cudaFreeAsync on the same stream).
// - AttentionForward runs its products as strided-batched GEMMs over the
//   full T x T (the softmax then zeroes above the diagonal). AttentionBackward
//   computes dv batched, then one (b, h) at a time through the T*T scratch
//   (two GEMMs, a kernel, two GEMMs each): the scratch of the signature holds
//   one head.

#include <cstdint>

namespace cohort::kernels::cuda {

void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                      int64_t B, int64_t T, int64_t C);
void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                       int64_t B, int64_t T, int64_t C);

void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                      float* rstd, int64_t rows, int64_t C, float eps);
void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                       const float* rstd, float* dx, float* dw, float* db, int64_t rows, int64_t C);

void ResidualAdd(const float* a, const float* b, float* out, int64_t n);

// ActForward / ActBackward with Activation::kGelu (one GELU definition).
void GeluForward(const float* x, float* y, int64_t n);
void GeluBackward(const float* x, const float* dy, float* dx, int64_t n);

void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                      int64_t NH);
void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                       float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH);

// `mean_loss` is device memory (nothing waits for the device).
void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                       int64_t V, float grad_scale, float* mean_loss);

// `out` is device memory.
void SumSquares(const float* x, int64_t n, float* out);

}  // namespace cohort::kernels::cuda
