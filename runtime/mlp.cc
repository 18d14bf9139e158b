#include "runtime/mlp.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "runtime/rng.h"

namespace cohort {
namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr uint64_t kStreamInit = 100;
}  // namespace

Mlp::Mlp(std::vector<int64_t> layers, kernels::Activation activation)
    : layers_(std::move(layers)), activation_(activation) {
  COHORT_CHECK(layers_.size() >= 2) << "an MLP needs at least input and output sizes";
  for (size_t l = 0; l + 1 < layers_.size(); ++l) {
    const int64_t in = layers_[l], out = layers_[l + 1];
    w_offset_.push_back(num_params_);
    info_.push_back({"layers." + std::to_string(l) + ".weight", num_params_, {in, out}});
    num_params_ += in * out;
    b_offset_.push_back(num_params_);
    info_.push_back({"layers." + std::to_string(l) + ".bias", num_params_, {out}});
    num_params_ += out;
  }
}

void Mlp::Init(float* params, uint64_t seed) const {
  for (size_t l = 0; l + 1 < layers_.size(); ++l) {
    const int64_t in = layers_[l], out = layers_[l + 1];
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    for (int64_t i = 0; i < in * out + out; ++i) {
      const int64_t off = w_offset_[l] + i;  // weights then bias are contiguous
      params[off] = UniformFloat(HashCombine(seed, kStreamInit, static_cast<uint64_t>(off)), -bound, bound);
    }
  }
}

void Mlp::Reserve(int64_t batch) {
  if (batch <= reserved_batch_) return;
  const size_t n = layers_.size() - 1;
  z_.assign(n, {});
  a_.assign(n, {});
  int64_t widest = 0;
  for (size_t l = 0; l < n; ++l) {
    z_[l].resize(static_cast<size_t>(batch * layers_[l + 1]));
    a_[l].resize(static_cast<size_t>(batch * layers_[l + 1]));
    widest = std::max(widest, layers_[l + 1]);
  }
  probs_.resize(static_cast<size_t>(batch * layers_.back()));
  dz_.resize(static_cast<size_t>(batch * widest));
  da_.resize(static_cast<size_t>(batch * widest));
  reserved_batch_ = batch;
}

void Mlp::Forward(const float* params, const float* x, int64_t batch) {
  Reserve(batch);
  const size_t n = layers_.size() - 1;
  const float* in = x;
  for (size_t l = 0; l < n; ++l) {
    const int64_t k = layers_[l], m = layers_[l + 1];
    float* z = z_[l].data();
    kernels::Gemm(false, false, batch, m, k, 1.0f, in, k, params + w_offset_[l], m, 0.0f, z, m);
    const bool last = l + 1 == n;
    // z keeps the pre-activation (GELU's backward needs it); a is the output.
    kernels::BiasActForward(z, params + b_offset_[l], z, batch, m, kernels::Activation::kNone);
    if (!last) kernels::ActForward(z, a_[l].data(), batch * m, activation_);
    in = last ? z : a_[l].data();
  }
}

double Mlp::Loss(const float* params, const float* x, const int32_t* labels, int64_t batch) {
  Forward(params, x, batch);
  return kernels::SoftmaxCrossEntropyForward(z_.back().data(), labels, probs_.data(), batch,
                                             layers_.back());
}

double Mlp::ForwardBackward(const float* params, const float* x, const int32_t* labels,
                            int64_t batch, float* grads, StepTimes* times) {
  const double t0 = Now();
  const double loss = Loss(params, x, labels, batch);
  const double t1 = Now();
  const size_t n = layers_.size() - 1;
  const int64_t classes = layers_.back();
  kernels::SoftmaxCrossEntropyBackward(probs_.data(), labels, dz_.data(), batch, classes,
                                       1.0f / static_cast<float>(batch));
  for (size_t li = n; li-- > 0;) {
    const int64_t k = layers_[li], m = layers_[li + 1];
    const float* in = li == 0 ? x : a_[li - 1].data();
    // dW = a^T dz ; db = colsum(dz)
    kernels::Gemm(true, false, k, m, batch, 1.0f, in, k, dz_.data(), m, 0.0f, grads + w_offset_[li], m);
    kernels::BiasGrad(dz_.data(), grads + b_offset_[li], batch, m);
    if (li == 0) break;  // no gradient for the input
    // da = dz W^T ; dz_prev = da * act'(z_prev)
    kernels::Gemm(false, true, batch, k, m, 1.0f, dz_.data(), m, params + w_offset_[li], m, 0.0f,
                  da_.data(), k);
    kernels::ActBackward(z_[li - 1].data(), da_.data(), dz_.data(), batch * k, activation_);
  }
  const double t2 = Now();
  if (times) {
    times->forward_s += t1 - t0;
    times->backward_s += t2 - t1;
  }
  return loss;
}

}  // namespace cohort
