#include "kernels/cpu/kernels.h"

#ifndef COHORT_NO_CBLAS
#include <cblas.h>
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/cpu/fast_math.h"

namespace cohort::kernels {

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef COHORT_NO_CBLAS
  // Builds without OpenBLAS (scripts/gpu-check's kernels-only build on a GPU
  // machine): the plain loop, fp32 accumulation, used only for small tests.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p)
        acc += (trans_a ? a[p * lda + i] : a[i * lda + p]) *
               (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * c[i * ldc + j]);
    }
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
#endif
}

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;

// The one definition of GELU (tanh form) and its derivative. Gelu, GeluGrad
// and the loops below all inline these, and fast_math.h's compile flags make
// every clone of a loop round each operation as the scalar code does, so a
// scalar call and any element of a vectorised loop agree bitwise.
inline float GeluOf(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  return 0.5f * x * (1.0f + fast_math::Tanh(u));
}

inline float GeluGradOf(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  const float t = fast_math::Tanh(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCoeff * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

COHORT_KERNEL_CLONES void BiasGeluRow(const float* x, const float* bias, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = GeluOf(x[i] + bias[i]);
}

COHORT_KERNEL_CLONES void GeluArray(const float* z, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = GeluOf(z[i]);
}

COHORT_KERNEL_CLONES void GeluGradArray(const float* z, const float* dy, float* dz, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dz[i] = dy[i] * GeluGradOf(z[i]);
}

}  // namespace

float Gelu(float x) { return GeluOf(x); }

float GeluGrad(float x) { return GeluGradOf(x); }

void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                    Activation act) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    switch (act) {
      case Activation::kNone:
        for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] + bias[c];
        break;
      case Activation::kRelu:
        for (int64_t c = 0; c < cols; ++c) yr[c] = std::max(xr[c] + bias[c], 0.0f);
        break;
      case Activation::kGelu:
        BiasGeluRow(xr, bias, yr, cols);
        break;
    }
  }
}

void ActForward(const float* z, float* y, int64_t n, Activation act) {
  switch (act) {
    case Activation::kNone:
      if (y != z) std::copy(z, z + n, y);
      break;
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) y[i] = std::max(z[i], 0.0f);
      break;
    case Activation::kGelu:
      GeluArray(z, y, n);
      break;
  }
}

void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n, Activation act) {
  switch (act) {
    case Activation::kNone:
      if (dz != dy) std::copy(dy, dy + n, dz);
      break;
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) dz[i] = z_or_y[i] > 0.0f ? dy[i] : 0.0f;
      break;
    case Activation::kGelu:
      GeluGradArray(z_or_y, dy, dz, n);
      break;
  }
}

void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols) {
  std::fill(db, db + cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* dr = dz + r * cols;
    for (int64_t c = 0; c < cols; ++c) db[c] += dr[c];
  }
}

double SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* lr = logits + r * cols;
    float* pr = probs + r * cols;
    float mx = lr[0];
    for (int64_t c = 1; c < cols; ++c) mx = std::max(mx, lr[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      pr[c] = std::exp(lr[c] - mx);
      sum += pr[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < cols; ++c) pr[c] *= inv;
    // loss = logsumexp - logit[label], computed stably.
    total += (std::log(sum) + mx) - lr[labels[r]];
  }
  return rows > 0 ? total / static_cast<double>(rows) : 0.0;
}

void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t cols, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = probs + r * cols;
    float* dr = dlogits + r * cols;
    for (int64_t c = 0; c < cols; ++c) dr[c] = pr[c] * scale;
    dr[labels[r]] -= scale;
  }
}

void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                       const SgdOptions& opt, bool first_step) {
  const float lr = opt.lr, mu = opt.momentum, wd = opt.weight_decay;
  if (mu == 0.0f) {
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + wd * param[i];
    const float b = first_step ? g : mu * momentum_buf[i] + g;
    momentum_buf[i] = b;
    param[i] -= lr * (opt.nesterov ? g + mu * b : b);
  }
}

void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamWOptions& opt, int64_t step) {
  const float b1 = opt.beta1, b2 = opt.beta2;
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b1), step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b2), step));
  const float step_size = opt.lr / bc1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
  const float decay = 1.0f - opt.lr * opt.weight_decay;
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + opt.eps);
  }
}

void Scale(float* y, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

namespace {

bool Is16Bit(DType t) { return t == DType::kBF16 || t == DType::kF16; }

// A stored rows x cols matrix with row stride ld, widened to fp32 (same layout).
std::vector<float> Widen(DType t, const void* p, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows > 0 ? (rows - 1) * ld + cols : 0));
  if (t == DType::kF32) {
    const auto* f = static_cast<const float*>(p);
    for (int64_t r = 0; r < rows; ++r)
      std::copy(f + r * ld, f + r * ld + cols, out.data() + r * ld);
    return out;
  }
  const auto* h = static_cast<const uint16_t*>(p);
  if (ld == cols) {
    CastHalfToFloat(t, h, out.data(), out.size(), 1.0f);
    return out;
  }
  for (int64_t r = 0; r < rows; ++r)
    CastHalfToFloat(t, h + r * ld, out.data() + r * ld, static_cast<size_t>(cols), 1.0f);
  return out;
}

}  // namespace

void GemmMixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               DType ab_type, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
               DType c_type, void* c, int64_t ldc) {
  COHORT_CHECK(ab_type == DType::kF32 || Is16Bit(ab_type)) << DTypeName(ab_type);
  COHORT_CHECK(c_type == DType::kF32 || c_type == ab_type) << DTypeName(c_type);
  if (m == 0 || n == 0) return;
  const std::vector<float> wa = Widen(ab_type, a, trans_a ? k : m, trans_a ? m : k, lda);
  const std::vector<float> wb = Widen(ab_type, b, trans_b ? n : k, trans_b ? k : n, ldb);
  if (c_type == DType::kF32) {
    Gemm(trans_a, trans_b, m, n, k, alpha, wa.data(), lda, wb.data(), ldb, beta,
         static_cast<float*>(c), ldc);
    return;
  }
  std::vector<float> wc = Widen(c_type, c, m, n, ldc);
  Gemm(trans_a, trans_b, m, n, k, alpha, wa.data(), lda, wb.data(), ldb, beta, wc.data(), ldc);
  for (int64_t i = 0; i < m; ++i) {
    CastFloatToHalf(c_type, wc.data() + i * ldc, static_cast<uint16_t*>(c) + i * ldc,
                    static_cast<size_t>(n), 1.0f);
  }
}

void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale) {
  COHORT_CHECK(Is16Bit(half)) << DTypeName(half);
  CastFloatToHalf(half, in, out, static_cast<size_t>(n), scale);
}

void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale) {
  COHORT_CHECK(Is16Bit(half)) << DTypeName(half);
  CastHalfToFloat(half, in, out, static_cast<size_t>(n), scale);
}

void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found_nonfinite) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    y[i] *= s;
    bad |= !std::isfinite(y[i]);
  }
  if (bad) *found_nonfinite = 1;
}

void MultiTensorSgdMomentumUpdate(const SgdTensor* tensors, int count, const SgdOptions& opt,
                                  bool first_step) {
  for (int i = 0; i < count; ++i) {
    const SgdTensor& t = tensors[i];
    SgdMomentumUpdate(t.param, t.grad, t.momentum_buf, t.n, opt, first_step);
  }
}

void MultiTensorAdamWUpdate(const AdamWTensor* tensors, int count, const AdamWOptions& opt,
                            int64_t step) {
  for (int i = 0; i < count; ++i) {
    const AdamWTensor& t = tensors[i];
    AdamWUpdate(t.param, t.grad, t.m, t.v, t.n, opt, step);
  }
}

void Pack(const float* const* srcs, const int64_t* counts, int count, float* flat) {
  for (int i = 0; i < count; ++i) {
    std::copy(srcs[i], srcs[i] + counts[i], flat);
    flat += counts[i];
  }
}

void Unpack(const float* flat, float* const* dsts, const int64_t* counts, int count) {
  for (int i = 0; i < count; ++i) {
    std::copy(flat, flat + counts[i], dsts[i]);
    flat += counts[i];
  }
}

void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                int64_t rows, int64_t cols, float* mean_loss) {
  *mean_loss = static_cast<float>(SoftmaxCrossEntropyForward(logits, labels, probs, rows, cols));
}

}  // namespace cohort::kernels

namespace cohort::kernels {
#ifdef COHORT_NO_CBLAS
void SetBlasThreads(int) {}
int BlasThreads() { return 1; }
#else
void SetBlasThreads(int threads) { openblas_set_num_threads(threads); }
int BlasThreads() { return openblas_get_num_threads(); }
#endif
}  // namespace cohort::kernels
