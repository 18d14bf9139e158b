#include "runtime/optimizer.h"

#include "kernels/cpu/kernels.h"

namespace cohort {
namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerConfig& c, int64_t n) : n_(n) {
    opt_.lr = c.lr;
    opt_.momentum = c.momentum;
    opt_.weight_decay = c.weight_decay;
    opt_.nesterov = c.nesterov;
    if (c.momentum != 0.0f) momentum_ = Tensor::Zeros({n});
  }
  void Step(float* params, const float* grads) override {
    kernels::SgdMomentumUpdate(params, grads, momentum_.defined() ? momentum_.data<float>() : nullptr,
                               n_, opt_, steps_ == 0);
    ++steps_;
  }
  std::vector<std::pair<std::string, Tensor>> State() const override {
    if (!momentum_.defined()) return {};
    return {{"momentum", momentum_}};
  }

 private:
  int64_t n_;
  kernels::SgdOptions opt_;
  Tensor momentum_;
};

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerConfig& c, int64_t n) : n_(n), m_(Tensor::Zeros({n})), v_(Tensor::Zeros({n})) {
    opt_.lr = c.lr;
    opt_.beta1 = c.beta1;
    opt_.beta2 = c.beta2;
    opt_.eps = c.eps;
    opt_.weight_decay = c.weight_decay;
  }
  void Step(float* params, const float* grads) override {
    kernels::AdamWUpdate(params, grads, m_.data<float>(), v_.data<float>(), n_, opt_, ++steps_);
  }
  std::vector<std::pair<std::string, Tensor>> State() const override {
    return {{"exp_avg", m_}, {"exp_avg_sq", v_}};
  }

 private:
  int64_t n_;
  kernels::AdamWOptions opt_;
  Tensor m_, v_;
};

}  // namespace

int64_t Optimizer::state_bytes() const {
  int64_t b = 0;
  for (const auto& [name, t] : State()) b += static_cast<int64_t>(t.nbytes());
  return b;
}

std::unique_ptr<Optimizer> MakeOptimizer(const OptimizerConfig& config, int64_t num_params) {
  if (config.type == OptimizerType::kAdamW) return std::make_unique<AdamW>(config, num_params);
  return std::make_unique<Sgd>(config, num_params);
}

}  // namespace cohort
