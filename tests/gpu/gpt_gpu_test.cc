// The GPT's golden training test, GPU against CPU: runtime/gpt's forward and
// backward, the Trainer's gradient clipping (as Trainer::ClipGradients does
// it on one rank: one SumSquares per parameter tensor, summed on the host,
// one Scale) and runtime/optimizer's AdamW run the same seeded job on a CUDA
// Compute and on the CPU for kSteps steps. The first step's gradients, every
// step's loss and gradient norm, a validation loss (LossTo) and the final
// parameters must agree within the tolerances stated below. This is what
// `cohort train --device cuda` runs each step for a GPT, minus the token
// loader and NCCL, so it runs in the kernels-only build that scripts/gpu-check
// makes on a bare GPU machine. Labelled `gpu`; without a device every test
// skips with the reason.
//
// It prints the largest differences it saw, for the note of whoever runs it.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "runtime/compute.h"
#include "runtime/gpt.h"
#include "runtime/optimizer.h"
#include "tests/gpu/gpu_test_util.h"

namespace cohort {
namespace {

constexpr int64_t kSteps = 30;
constexpr int64_t kBatch = 4;
constexpr float kLr = 1e-3f;
constexpr float kClip = 1.0f;

GptConfig TestModel() {  // 0.1 M parameters: every kernel, two blocks
  GptConfig c;
  c.vocab = 96;
  c.context = 32;
  c.layers = 2;
  c.heads = 4;
  c.width = 64;
  return c;
}

// Token windows of context + 1 from a fixed stream in which each token is
// mostly its predecessor + 1 (so the loss falls), now and then a random one:
// kSteps training batches and one validation batch, the same for both runs.
struct Batches {
  std::vector<std::vector<int32_t>> x, y;  // per batch: kBatch x context
};
Batches MakeBatches(const GptConfig& m) {
  std::mt19937 rng(5);
  std::vector<int32_t> stream(1 << 14);
  int32_t prev = 0;
  for (int32_t& t : stream) {
    t = rng() % 8 == 0 ? static_cast<int32_t>(rng() % m.vocab)
                       : static_cast<int32_t>((prev + 1) % m.vocab);
    prev = t;
  }
  Batches b;
  const size_t T = static_cast<size_t>(m.context);
  for (int64_t k = 0; k <= kSteps; ++k) {
    std::vector<int32_t> x, y;
    for (int64_t s = 0; s < kBatch; ++s) {
      const size_t at = rng() % (stream.size() - T - 1);
      x.insert(x.end(), stream.begin() + at, stream.begin() + at + T);
      y.insert(y.end(), stream.begin() + at + 1, stream.begin() + at + T + 1);
    }
    b.x.push_back(std::move(x));
    b.y.push_back(std::move(y));
  }
  return b;
}

// train.clip_grad_norm as Trainer::ClipGradients computes it on one rank of
// one: the norm of `grads` before clipping; scales them by kClip / (norm +
// 1e-6) when that is below 1. `parts` holds one float per parameter tensor.
Result<double> ClipGradients(Compute& c, const Model& model, float* grads, float* parts) {
  const auto& info = model.params();
  c.Zero(parts, info.size() * 4);
  for (size_t i = 0; i < info.size(); ++i) {
    int64_t count = 1;
    for (int64_t d : info[i].shape) count *= d;
    c.SumSquares(grads + info[i].offset, count, parts + i);
  }
  std::vector<float> host(info.size());
  COHORT_RETURN_IF_ERROR(c.CopyToHost(host.data(), parts, host.size() * 4));
  double sumsq = 0;
  for (float v : host) sumsq += v;
  const double norm = std::sqrt(sumsq);
  const double coef = kClip / (norm + 1e-6);
  if (coef < 1.0) c.Scale(grads, model.num_params(), static_cast<float>(coef));
  return norm;
}

struct Trained {
  std::vector<float> losses;
  std::vector<double> norms;       // before clipping
  std::vector<float> first_grads;  // step 1's, before clipping
  std::vector<float> params;       // after the last step
  float val_loss = 0;              // LossTo on the validation batch, after the last step
  std::string error;
};

// Trains kSteps on `compute` from seed 7 with AdamW and clipping.
Trained Train(Compute& compute, const Batches& data) {
  Trained out;
  auto fail = [&](const Status& s) {
    out.error = s.ToString();
    return out;
  };
  const GptConfig m = TestModel();
  Gpt model(m, nullptr, &compute);
  const int64_t n = model.num_params();
  std::vector<float> init(static_cast<size_t>(n));
  model.Init(init.data(), 7);
  OptimizerConfig oc;
  oc.type = OptimizerType::kAdamW;
  oc.lr = kLr;
  oc.beta2 = 0.95f;
  oc.weight_decay = 0.1f;
  auto opt = MakeOptimizer(oc, n, &compute);
  const int64_t tokens = kBatch * m.context;
  auto params = compute.Alloc({n}, DType::kF32);
  auto grads = compute.Alloc({n}, DType::kF32);
  auto x = compute.Alloc({tokens}, DType::kI32);
  auto y = compute.Alloc({tokens}, DType::kI32);
  auto loss = compute.Alloc({1}, DType::kF32);
  auto parts = compute.Alloc({static_cast<int64_t>(model.params().size())}, DType::kF32);
  if (!opt.ok() || !params.ok() || !grads.ok() || !x.ok() || !y.ok() || !loss.ok() || !parts.ok()) {
    out.error = "allocation failed";
    return out;
  }
  compute.CopyToDevice(params->raw(), init.data(), init.size() * 4);
  auto load = [&](size_t k) {
    compute.CopyToDevice(x->raw(), data.x[k].data(), data.x[k].size() * 4);
    compute.CopyToDevice(y->raw(), data.y[k].data(), data.y[k].size() * 4);
  };
  for (int64_t step = 0; step < kSteps; ++step) {
    load(static_cast<size_t>(step));
    Status s = model.ForwardBackwardTo(params->data<float>(), x->raw(), y->data<int32_t>(), kBatch,
                                       grads->data<float>(), loss->data<float>(), nullptr, nullptr,
                                       nullptr);
    if (!s.ok()) return fail(s);
    if (step == 0) {
      out.first_grads.resize(static_cast<size_t>(n));
      s = compute.CopyToHost(out.first_grads.data(), grads->raw(), out.first_grads.size() * 4);
      if (!s.ok()) return fail(s);
    }
    auto norm = ClipGradients(compute, model, grads->data<float>(), parts->data<float>());
    if (!norm.ok()) return fail(norm.status());
    out.norms.push_back(*norm);
    (*opt)->Step(params->data<float>(), grads->data<float>());
    auto l = compute.ReadFloat(loss->data<float>());
    if (!l.ok()) return fail(l.status());
    out.losses.push_back(*l);
  }
  load(static_cast<size_t>(kSteps));
  Status s = model.LossTo(params->data<float>(), x->raw(), y->data<int32_t>(), kBatch,
                          loss->data<float>());
  if (!s.ok()) return fail(s);
  auto v = compute.ReadFloat(loss->data<float>());
  if (!v.ok()) return fail(v.status());
  out.val_loss = *v;
  out.params.resize(static_cast<size_t>(n));
  s = compute.CopyToHost(out.params.data(), params->raw(), out.params.size() * 4);
  if (!s.ok()) return fail(s);
  return out;
}

// Whether flat element `i` is a key bias (the middle third of c_attn.bias).
bool IsKeyBias(const Gpt& model, int64_t i) {
  const int64_t C = model.config().width;
  for (const ParamInfo& p : model.params()) {
    if (p.name.find("attn.c_attn.bias") != std::string::npos && i >= p.offset + C &&
        i < p.offset + 2 * C) {
      return true;
    }
  }
  return false;
}

double Rel(double a, double b) { return std::fabs(a - b) / std::max(1e-30, std::fabs(b)); }

// fp32: cuBLAS in strict fp32 (no TF32) against OpenBLAS; the reductions
// (LayerNorm, softmax, attention, bias and embedding gradients, the sums of
// squares) run in other orders, so the last bits differ and drift over 30
// steps. Tolerances:
// - step 1's gradients (same parameters, same batch): max |gpu - cpu| <=
//   1e-4 x max |cpu| (the golden test's bound against PyTorch);
// - every step's loss and gradient norm: 1e-4 relative;
// - the validation loss after the last step: 1e-4 relative;
// - the final parameters: 2e-3 absolute, except the key biases. Their
//   gradient is zero in exact arithmetic (a bias on every key adds the same
//   q.b to each score of a row, which the softmax removes), so what reaches
//   them is rounding noise, and AdamW's division by sqrt(v) turns noise into
//   steps of up to about lr: they may differ by up to 2 x kSteps x lr, and
//   they change no output.
TEST(GptGpuVsCpu, Fp32AdamWWithClipping) {
  SKIP_WITHOUT_GPU();
  auto gpu = MakeCudaCompute(0);
  ASSERT_TRUE(gpu.ok());
  const Batches data = MakeBatches(TestModel());
  const Trained cpu_run = Train(HostCompute(), data);
  const Trained gpu_run = Train(**gpu, data);
  ASSERT_TRUE(cpu_run.error.empty()) << cpu_run.error;
  ASSERT_TRUE(gpu_run.error.empty()) << gpu_run.error;
  ASSERT_EQ(cpu_run.losses.size(), gpu_run.losses.size());
  ASSERT_EQ(cpu_run.params.size(), gpu_run.params.size());

  double grad_scale = 0, worst_grad = 0;
  for (size_t i = 0; i < cpu_run.first_grads.size(); ++i) {
    grad_scale = std::max(grad_scale, static_cast<double>(std::fabs(cpu_run.first_grads[i])));
    worst_grad =
        std::max(worst_grad,
                 static_cast<double>(std::fabs(cpu_run.first_grads[i] - gpu_run.first_grads[i])));
  }
  EXPECT_LE(worst_grad, 1e-4 * grad_scale);

  double worst_loss = 0, worst_norm = 0;
  for (size_t i = 0; i < cpu_run.losses.size(); ++i) {
    worst_loss = std::max(worst_loss, Rel(gpu_run.losses[i], cpu_run.losses[i]));
    worst_norm = std::max(worst_norm, Rel(gpu_run.norms[i], cpu_run.norms[i]));
  }
  EXPECT_LE(worst_loss, 1e-4);
  EXPECT_LE(worst_norm, 1e-4);
  const double val_rel = Rel(gpu_run.val_loss, cpu_run.val_loss);
  EXPECT_LE(val_rel, 1e-4);

  Gpt layout = Gpt::Layout(TestModel(), 1, 0);
  double worst_param = 0, worst_key_bias = 0;
  for (size_t i = 0; i < cpu_run.params.size(); ++i) {
    const double d = std::fabs(cpu_run.params[i] - gpu_run.params[i]);
    double& worst = IsKeyBias(layout, static_cast<int64_t>(i)) ? worst_key_bias : worst_param;
    worst = std::max(worst, d);
  }
  EXPECT_LE(worst_param, 2e-3);
  const double key_bias_bound = 2.0 * kSteps * kLr;
  EXPECT_LE(worst_key_bias, key_bias_bound);

  // The job clipped (the norm exceeded kClip at the start) and trained.
  EXPECT_TRUE(cpu_run.norms.front() > kClip);
  EXPECT_TRUE(cpu_run.losses.back() < cpu_run.losses.front());
  EXPECT_TRUE(gpu_run.losses.back() < gpu_run.losses.front());
  std::printf(
      "[ figures  ] gpt fp32 adamw + clipping: %lld steps, loss %.4f -> %.4f, validation %.4f; "
      "largest differences: step-1 gradient %.2e of its largest (tolerance 1e-4), loss %.2e "
      "(relative, tolerance 1e-4), gradient norm %.2e (relative, 1e-4), validation loss %.2e "
      "(relative, 1e-4), parameter %.2e (tolerance 2e-3), key bias %.2e (bound %.0e)\n",
      static_cast<long long>(kSteps), gpu_run.losses.front(), gpu_run.losses.back(),
      gpu_run.val_loss, grad_scale > 0 ? worst_grad / grad_scale : 0.0, worst_loss, worst_norm,
      val_rel, worst_param, worst_key_bias, key_bias_bound);
}

}  // namespace
}  // namespace cohort
