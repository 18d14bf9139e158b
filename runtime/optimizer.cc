#include "runtime/optimizer.h"

namespace cohort {
namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerConfig& c, int64_t n, Compute& compute) : n_(n), compute_(compute) {
    opt_.lr = c.lr;
    opt_.momentum = c.momentum;
    opt_.weight_decay = c.weight_decay;
    opt_.nesterov = c.nesterov;
  }
  Status Init(const OptimizerConfig& c) {
    if (c.momentum != 0.0f) {
      COHORT_ASSIGN_OR_RETURN(momentum_, compute_.Alloc({n_}, DType::kF32));
    }
    return Status::Ok();
  }
  void Step(float* params, const float* grads) override {
    compute_.SgdMomentumUpdate(params, grads,
                               momentum_.defined() ? momentum_.data<float>() : nullptr, n_, opt_,
                               steps_ == 0);
    ++steps_;
  }
  void set_lr(float lr) override { opt_.lr = lr; }
  std::vector<std::pair<std::string, Tensor>> State() const override {
    if (!momentum_.defined()) return {};
    return {{"momentum", momentum_}};
  }

 private:
  int64_t n_;
  Compute& compute_;
  kernels::SgdOptions opt_;
  Tensor momentum_;
};

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerConfig& c, int64_t n, Compute& compute) : n_(n), compute_(compute) {
    opt_.lr = c.lr;
    opt_.beta1 = c.beta1;
    opt_.beta2 = c.beta2;
    opt_.eps = c.eps;
    opt_.weight_decay = c.weight_decay;
  }
  Status Init(const OptimizerConfig&) {
    COHORT_ASSIGN_OR_RETURN(m_, compute_.Alloc({n_}, DType::kF32));
    COHORT_ASSIGN_OR_RETURN(v_, compute_.Alloc({n_}, DType::kF32));
    return Status::Ok();
  }
  void Step(float* params, const float* grads) override {
    compute_.AdamWUpdate(params, grads, m_.data<float>(), v_.data<float>(), n_, opt_, ++steps_);
  }
  void set_lr(float lr) override { opt_.lr = lr; }
  std::vector<std::pair<std::string, Tensor>> State() const override {
    return {{"exp_avg", m_}, {"exp_avg_sq", v_}};
  }

 private:
  int64_t n_;
  Compute& compute_;
  kernels::AdamWOptions opt_;
  Tensor m_, v_;
};

}  // namespace

int64_t Optimizer::state_bytes() const {
  int64_t b = 0;
  for (const auto& [name, t] : State()) b += static_cast<int64_t>(t.nbytes());
  return b;
}

Result<std::unique_ptr<Optimizer>> MakeOptimizer(const OptimizerConfig& config, int64_t num_params,
                                                 Compute* compute) {
  Compute& c = compute != nullptr ? *compute : HostCompute();
  auto init = [&](auto o) -> Result<std::unique_ptr<Optimizer>> {
    COHORT_RETURN_IF_ERROR(o->Init(config).WithContext("optimizer state on " + c.Describe()));
    return std::unique_ptr<Optimizer>(std::move(o));
  };
  if (config.type == OptimizerType::kAdamW)
    return init(std::make_unique<AdamW>(config, num_params, c));
  return init(std::make_unique<Sgd>(config, num_params, c));
}

}  // namespace cohort
