// CPU kernels of the GPT-2 transformer (transformer.h).
//
// Speed: these run on one core per rank, so every inner loop runs over
// contiguous memory with no calls, for the compiler to vectorise (-O3):
// reductions keep kLanes independent partial sums (a float sum cannot be
// reordered by the compiler, kLanes explicit ones can), and softmax uses
// fast_math::ExpNonPositive, an inlined polynomial exp, instead of a call to
// expf per element. Attention's products go to OpenBLAS (kernels::Gemm),
// restricted to the blocks on or below the diagonal.

#include "kernels/cpu/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/kernels.h"

namespace cohort::kernels {
namespace {

constexpr int kLanes = 8;

using fast_math::ExpNonPositive;
using fast_math::Max;

// sum_{i < n} term(i), as kLanes interleaved partial sums added at the end.
template <class Acc, class Term>
inline Acc LaneSum(int64_t n, Term term) {
  Acc acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += term(i + l);
  }
  Acc total = 0;
  for (; i < n; ++i) total += term(i);
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return total;
}

// max_{i < n} x[i] for n >= 1.
inline float RowMax(const float* x, int64_t n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = Max(acc[l], x[i + l]);
  }
  float m = x[0];
  for (; i < n; ++i) m = Max(m, x[i]);
  for (int l = 0; l < kLanes; ++l) m = Max(m, acc[l]);
  return m;
}

// In place over row[0, n): row = softmax(row) (n >= 1).
inline void SoftmaxRow(float* row, int64_t n) {
  const float mx = RowMax(row, n);
  for (int64_t i = 0; i < n; ++i) row[i] = ExpNonPositive(row[i] - mx);
  const float inv = 1.0f / LaneSum<float>(n, [&](int64_t i) { return row[i]; });
  for (int64_t i = 0; i < n; ++i) row[i] *= inv;
}

// Attention GEMMs work on blocks of kAttBlock positions, so the products
// skip the blocks above the diagonal (about half the work at large T).
constexpr int64_t kAttBlock = 64;

}  // namespace

void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                      int64_t B, int64_t T, int64_t C) {
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const float* e = wte + static_cast<int64_t>(tokens[b * T + t]) * C;
      const float* p = wpe + t * C;
      float* o = out + (b * T + t) * C;
      for (int64_t c = 0; c < C; ++c) o[c] = e[c] + p[c];
    }
  }
}

void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                       int64_t B, int64_t T, int64_t C) {
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const float* d = dout + (b * T + t) * C;
      float* e = dwte + static_cast<int64_t>(tokens[b * T + t]) * C;
      float* p = dwpe + t * C;
      for (int64_t c = 0; c < C; ++c) e[c] += d[c];
      for (int64_t c = 0; c < C; ++c) p[c] += d[c];
    }
  }
}

void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                      float* rstd, int64_t rows, int64_t C, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    const float m = LaneSum<float>(C, [&](int64_t c) { return xr[c]; }) / static_cast<float>(C);
    const float var = LaneSum<float>(C,
                                     [&](int64_t c) {
                                       const float d = xr[c] - m;
                                       return d * d;
                                     }) /
                      static_cast<float>(C);
    const float s = 1.0f / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - m) * s * w[c] + b[c];
    mean[r] = m;
    rstd[r] = s;
  }
}

namespace {
// One row's dx, dw, db updates. The buffers are distinct (restrict): alias
// checks for six pointers are more than GCC versions a loop for, and it
// would leave it scalar.
void LayerNormBackwardRow(const float* __restrict dy, const float* __restrict x,
                          const float* __restrict w, float* __restrict dx, float* __restrict dw,
                          float* __restrict db, int64_t C, float mean, float rstd, float g_mean,
                          float gx_mean) {
  for (int64_t c = 0; c < C; ++c) {
    const float xhat = (x[c] - mean) * rstd;
    db[c] += dy[c];
    dw[c] += dy[c] * xhat;
    dx[c] += rstd * (dy[c] * w[c] - g_mean - xhat * gx_mean);
  }
}
}  // namespace

// With xhat = (x - mean) * rstd and g = dy * w (the gradient w.r.t. xhat):
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                       const float* rstd, float* dx, float* dw, float* db, int64_t rows,
                       int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * C;
    const float* xr = x + r * C;
    float* dxr = dx + r * C;
    const float m = mean[r], s = rstd[r];
    const float g_mean =
        LaneSum<float>(C, [&](int64_t c) { return dyr[c] * w[c]; }) / static_cast<float>(C);
    const float gx_mean =
        LaneSum<float>(C, [&](int64_t c) { return dyr[c] * w[c] * ((xr[c] - m) * s); }) /
        static_cast<float>(C);
    LayerNormBackwardRow(dyr, xr, w, dxr, dw, db, C, m, s, g_mean, gx_mean);
  }
}

void ResidualAdd(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void GeluForward(const float* x, float* y, int64_t n) { ActForward(x, y, n, Activation::kGelu); }

void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) {
  ActBackward(x, dy, dx, n, Activation::kGelu);
}

// Per (b, h), with q, k, v the T x hs views of qkv (row stride 3C) and
// row blocks [i0, i1) of kAttBlock positions:
//   att[i0:i1, 0:i1] = q[i0:i1] k[0:i1]^T / sqrt(hs)   (GEMM)
//   each row t: softmax over 0..t, zeros after
//   out[i0:i1] = att[i0:i1, 0:i1] v[0:i1]              (GEMM)
void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                      int64_t NH) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const float* q = qkv + b * T * C3 + h * hs;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* a = att + (b * NH + h) * T * T;
      float* o = out + b * T * C + h * hs;
      for (int64_t i0 = 0; i0 < T; i0 += kAttBlock) {
        const int64_t i1 = std::min(T, i0 + kAttBlock);
        Gemm(false, true, i1 - i0, i1, hs, scale, q + i0 * C3, C3, k, C3, 0.0f, a + i0 * T, T);
        for (int64_t t = i0; t < i1; ++t) {
          float* row = a + t * T;
          SoftmaxRow(row, t + 1);
          std::fill(row + t + 1, row + T, 0.0f);
        }
        Gemm(false, false, i1 - i0, hs, i1, 1.0f, a + i0 * T, T, v, C3, 0.0f, o + i0 * C, C);
      }
    }
  }
}

// Per (b, h), with dout_h the T x hs view of dout (row stride C), and
// ds = scratch:
//   datt = dout_h v^T                   (row blocks, into ds)
//   ds[t, :] = att * (datt - sum_t2 att * datt) / sqrt(hs), zero past t
//   dq = ds k, dk = ds^T q, dv = att^T dout_h  (GEMMs with beta 0: written)
// The transposed products run over column blocks [j0, j1): only rows >= j0
// of att and ds are non-zero there.
void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                       float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH) {
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  float* ds = scratch;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const float* q = qkv + b * T * C3 + h * hs;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dqkv + b * T * C3 + h * hs;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* a = att + (b * NH + h) * T * T;
      const float* g = dout + b * T * C + h * hs;
      for (int64_t i0 = 0; i0 < T; i0 += kAttBlock) {
        const int64_t i1 = std::min(T, i0 + kAttBlock);
        Gemm(false, true, i1 - i0, i1, hs, 1.0f, g + i0 * C, C, v, C3, 0.0f, ds + i0 * T, T);
        for (int64_t t = i0; t < i1; ++t) {
          const float* ar = a + t * T;
          float* dr = ds + t * T;
          const float dot = LaneSum<float>(t + 1, [&](int64_t j) { return ar[j] * dr[j]; });
          for (int64_t j = 0; j <= t; ++j) dr[j] = ar[j] * (dr[j] - dot) * scale;
          std::fill(dr + t + 1, dr + T, 0.0f);
        }
        Gemm(false, false, i1 - i0, hs, i1, 1.0f, ds + i0 * T, T, k, C3, 0.0f, dq + i0 * C3, C3);
      }
      for (int64_t j0 = 0; j0 < T; j0 += kAttBlock) {
        const int64_t j1 = std::min(T, j0 + kAttBlock);
        Gemm(true, false, j1 - j0, hs, T - j0, 1.0f, ds + j0 * T + j0, T, q + j0 * C3, C3, 0.0f,
             dk + j0 * C3, C3);
        Gemm(true, false, j1 - j0, hs, T - j0, 1.0f, a + j0 * T + j0, T, g + j0 * C, C, 0.0f,
             dv + j0 * C3, C3);
      }
    }
  }
}

void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                       int64_t V, float grad_scale, float* mean_loss) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = logits + r * V;
    const float target_logit = l[targets[r]];  // read before dlogits (maybe l) is written
    const float mx = RowMax(l, V);
    double sum;
    if (dlogits == nullptr) {
      sum = LaneSum<double>(
          V, [&](int64_t c) { return static_cast<double>(ExpNonPositive(l[c] - mx)); });
    } else {
      float* d = dlogits + r * V;
      for (int64_t c = 0; c < V; ++c) d[c] = ExpNonPositive(l[c] - mx);
      sum = LaneSum<double>(V, [&](int64_t c) { return static_cast<double>(d[c]); });
      const float f = static_cast<float>(static_cast<double>(grad_scale) / sum);
      for (int64_t c = 0; c < V; ++c) d[c] *= f;
      d[targets[r]] -= grad_scale;
    }
    // -log softmax(l)[target] = log(sum exp(l - mx)) + mx - l[target]
    total += std::log(sum) + static_cast<double>(mx) - static_cast<double>(target_logit);
  }
  *mean_loss = rows > 0 ? static_cast<float>(total / static_cast<double>(rows)) : 0.0f;
}

void SumSquares(const float* x, int64_t n, float* out) {
  const double s = LaneSum<double>(n, [&](int64_t i) {
    const double v = x[i];
    return v * v;
  });
  *out = static_cast<float>(s);
}

}  // namespace cohort::kernels
