#include "kernels/cpu/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

namespace cohort::kernels {

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;
}  // namespace

float Gelu(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(u));
}

float GeluGrad(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  const float t = std::tanh(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCoeff * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

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
        for (int64_t c = 0; c < cols; ++c) yr[c] = Gelu(xr[c] + bias[c]);
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
      for (int64_t i = 0; i < n; ++i) y[i] = Gelu(z[i]);
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
      for (int64_t i = 0; i < n; ++i) dz[i] = dy[i] * GeluGrad(z_or_y[i]);
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

}  // namespace cohort::kernels

namespace cohort::kernels {
void SetBlasThreads(int threads) { openblas_set_num_threads(threads); }
int BlasThreads() { return openblas_get_num_threads(); }
}  // namespace cohort::kernels
