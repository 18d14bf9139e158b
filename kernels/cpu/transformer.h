#pragma once
// CPU kernels of a GPT-2 style transformer (runtime/gpt.h), over raw
// row-major fp32 arrays. Conventions as kernels/cpu/kernels.h: the caller
// owns every buffer, sizes are element counts, each kernel has a CUDA twin in
// kernels/cuda/transformer.h with the same signature and a plain-loop
// reference in tests/kernels/transformer_kernels_test.cc.
//
// Shapes: B sequences of T positions, width C, NH heads of C/NH each, V
// vocabulary entries; a (B, T, C) activation is B*T rows of C.
//
// Gradients follow one rule: a kernel *adds* into a gradient that several
// paths feed (the residual stream dx of LayerNorm, the embedding tables, the
// LayerNorm weight and bias) and overwrites one that only it produces.

#include <cstdint>

namespace cohort::kernels {

// out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :]. Tokens lie in [0, V)
// (the caller checks them).
void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                      int64_t B, int64_t T, int64_t C);
// dwte[tokens[b, t], :] += dout[b, t, :]; dwpe[t, :] += sum_b dout[b, t, :].
// Rows are added in order of (b, t), so the result is deterministic.
void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                       int64_t B, int64_t T, int64_t C);

// y = (x - mean) * rstd * w + b over each row of C, rstd = 1/sqrt(var + eps)
// with the biased variance (torch.nn.LayerNorm). Writes mean and rstd (one
// float per row each) for the backward pass.
void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                      float* rstd, int64_t rows, int64_t C, float eps);
// Adds the gradient of the loss w.r.t. x into dx (the residual stream), and
// w.r.t. w and b into dw and db. `dy` must not alias dx.
void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                       const float* rstd, float* dx, float* dw, float* db, int64_t rows, int64_t C);

// out[i] = a[i] + b[i]; out may alias a or b.
void ResidualAdd(const float* a, const float* b, float* out, int64_t n);

// GELU, tanh form (Gelu in kernels.h), elementwise: y may alias x.
void GeluForward(const float* x, float* y, int64_t n);
// dx[i] = dy[i] * gelu'(x[i]) where x is the GELU's input; dx may alias dy.
void GeluBackward(const float* x, const float* dy, float* dx, int64_t n);

// Causal multi-head self-attention after the fused QKV projection.
// qkv is (B, T, 3C): per position [q | k | v], each C = NH heads of hs = C/NH
// (head h at columns h*hs .. (h+1)*hs of its part: nanoGPT's split + view).
// For each (b, h): scores = q k^T / sqrt(hs) over positions t2 <= t1 (the
// rest masked out), att = softmax over t2, out[b, t, h*hs + d] = sum_t2
// att[t, t2] v[t2, d]. Scores and the weighted sum are GEMMs over strided
// views of qkv (no copies).
// `att` (B, NH, T, T) receives the softmax probabilities (zeros above the
// diagonal) and is what the backward pass needs: B*NH*T*T floats per layer.
void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                      int64_t NH);
// Given dout (B, T, C), the forward's qkv and att: overwrites dqkv (B, T, 3C)
// with the gradient w.r.t. qkv. `scratch` holds T*T floats (the gradient of
// one head's scores).
void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                       float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH);

// Softmax cross-entropy over `rows` rows of V logits, fused with its
// gradient: writes the mean loss over the rows (computed in double, rounded
// to fp32) to *mean_loss and, when `dlogits` is not null, overwrites it with
// (softmax(logits) - onehot(target)) * grad_scale (grad_scale = 1/rows for
// the mean loss). `dlogits` may alias `logits` (the logits are then lost).
// Targets lie in [0, V) (the caller checks them).
void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                       int64_t V, float grad_scale, float* mean_loss);

// *out = sum_i x[i]^2 (accumulated in double, rounded to fp32): a part of a
// gradient norm.
void SumSquares(const float* x, int64_t n, float* out);

}  // namespace cohort::kernels
