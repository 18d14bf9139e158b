// The golden training test, GPU against CPU: the Trainer's model and
// optimizer code (runtime/mlp, runtime/optimizer) runs the same seeded job on
// a CUDA Compute and on the CPU, and every step's loss and the final
// parameters must agree within the tolerances stated below. This is the path
// `cohort train --device cuda` takes for every step (ForwardBackwardTo, the
// optimizer, the 16-bit weight cast), minus the data loader and NCCL, so it
// runs in the kernels-only build that scripts/gpu-check makes on a bare GPU
// machine. Labelled `gpu`; without a device every test skips with the reason.
//
// It prints the largest differences it saw, for the note of whoever runs it.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "runtime/compute.h"
#include "runtime/mlp.h"
#include "runtime/optimizer.h"
#include "tests/gpu/gpu_test_util.h"

namespace cohort {
namespace {

constexpr int64_t kSteps = 30;
constexpr int64_t kBatch = 64;
const std::vector<int64_t> kLayers = {64, 128, 128, 10};  // the golden model's shape, scaled down

struct Run {
  std::vector<float> losses;
  std::vector<float> params;
  std::string error;
};

// Trains kSteps on `compute` from seed 7, batches drawn from a fixed stream.
Run Train(Compute& compute, DType precision, OptimizerType type) {
  Run out;
  Mlp model(kLayers, kernels::Activation::kGelu, nullptr, &compute);
  const int64_t n = model.num_params();
  std::vector<float> init(static_cast<size_t>(n));
  model.Init(init.data(), 7);
  OptimizerConfig oc;
  oc.type = type;
  oc.lr = type == OptimizerType::kAdamW ? 0.003f : 0.05f;
  oc.momentum = 0.9f;
  auto opt = MakeOptimizer(oc, n, &compute);
  auto params = compute.Alloc({n}, DType::kF32);
  auto grads = compute.Alloc({n}, DType::kF32);
  auto params16 = compute.Alloc({n}, DType::kBF16);
  auto x = compute.Alloc({kBatch * kLayers.front()}, DType::kF32);
  auto y = compute.Alloc({kBatch}, DType::kI32);
  auto loss = compute.Alloc({1}, DType::kF32);
  if (!opt.ok() || !params.ok() || !grads.ok() || !params16.ok() || !x.ok() || !y.ok() ||
      !loss.ok()) {
    out.error = "allocation failed";
    return out;
  }
  compute.CopyToDevice(params->raw(), init.data(), init.size() * 4);
  Precision p;
  p.compute = precision;
  p.params16 = params16->data<uint16_t>();
  std::mt19937 rng(11);
  std::normal_distribution<float> feature(0.0f, 1.0f);
  std::uniform_int_distribution<int32_t> label(0, static_cast<int32_t>(kLayers.back() - 1));
  std::vector<float> hx(static_cast<size_t>(kBatch * kLayers.front()));
  std::vector<int32_t> hy(static_cast<size_t>(kBatch));
  for (int64_t step = 0; step < kSteps; ++step) {
    for (float& v : hx) v = feature(rng);
    for (int32_t& v : hy) v = label(rng);
    compute.CopyToDevice(x->raw(), hx.data(), hx.size() * 4);
    compute.CopyToDevice(y->raw(), hy.data(), hy.size() * 4);
    if (precision != DType::kF32)
      compute.CastFromFloat(params->data<float>(), precision, params16->raw(), n, 1.0f);
    Status s = model.ForwardBackwardTo(params->data<float>(), x->data<float>(), y->data<int32_t>(),
                                       kBatch, grads->data<float>(), loss->data<float>(), nullptr,
                                       nullptr, precision != DType::kF32 ? &p : nullptr);
    if (!s.ok()) {
      out.error = s.ToString();
      return out;
    }
    (*opt)->Step(params->data<float>(), grads->data<float>());
    auto l = compute.ReadFloat(loss->data<float>());
    if (!l.ok()) {
      out.error = l.status().ToString();
      return out;
    }
    out.losses.push_back(*l);
  }
  out.params.resize(static_cast<size_t>(n));
  Status s = compute.CopyToHost(out.params.data(), params->raw(), out.params.size() * 4);
  if (!s.ok()) out.error = s.ToString();
  return out;
}

void Compare(DType precision, OptimizerType type, double loss_rel_tol, double param_abs_tol,
             const char* name) {
  auto gpu = MakeCudaCompute(0);
  ASSERT_TRUE(gpu.ok());
  const Run cpu_run = Train(HostCompute(), precision, type);
  const Run gpu_run = Train(**gpu, precision, type);
  ASSERT_TRUE(cpu_run.error.empty());
  ASSERT_TRUE(gpu_run.error.empty());
  ASSERT_EQ(cpu_run.losses.size(), gpu_run.losses.size());
  double worst_loss = 0, worst_param = 0;
  for (size_t i = 0; i < cpu_run.losses.size(); ++i) {
    const double rel =
        std::fabs(cpu_run.losses[i] - gpu_run.losses[i]) / std::fabs(cpu_run.losses[i]);
    worst_loss = std::max(worst_loss, rel);
    EXPECT_LE(rel, loss_rel_tol);
  }
  for (size_t i = 0; i < cpu_run.params.size(); ++i) {
    worst_param = std::max(worst_param,
                           static_cast<double>(std::fabs(cpu_run.params[i] - gpu_run.params[i])));
  }
  EXPECT_LE(worst_param, param_abs_tol);
  // The model trained (the loss fell), on both.
  EXPECT_TRUE(cpu_run.losses.back() < cpu_run.losses.front());
  EXPECT_TRUE(gpu_run.losses.back() < gpu_run.losses.front());
  std::printf(
      "[ figures  ] %s: %lld steps, loss %.4f -> %.4f; largest loss difference %.2e (relative, "
      "tolerance %.0e), largest parameter difference %.2e (tolerance %.0e)\n",
      name, static_cast<long long>(kSteps), gpu_run.losses.front(), gpu_run.losses.back(),
      worst_loss, loss_rel_tol, worst_param, param_abs_tol);
}

// fp32: cuBLAS in strict fp32 (no TF32) against OpenBLAS; the sums run in
// other orders (and BiasGrad adds by atomics), so the last bits differ and
// drift over 30 steps, far below these bounds.
TEST(ModelGpuVsCpu, Fp32SgdMomentum) {
  SKIP_WITHOUT_GPU();
  Compare(DType::kF32, OptimizerType::kSgd, 1e-4, 1e-4, "fp32 sgd");
}
TEST(ModelGpuVsCpu, Fp32AdamW) {
  SKIP_WITHOUT_GPU();
  Compare(DType::kF32, OptimizerType::kAdamW, 1e-4, 2e-3, "fp32 adamw");
}
// bf16: the same 16-bit inputs on both, fp32 accumulation on both, but a
// product that lands near a bf16 rounding boundary can round the other way
// once the fp32 sums differ in their last bits: bf16's 8-bit mantissa
// (relative step 2^-8) bounds each such flip.
TEST(ModelGpuVsCpu, Bf16AdamW) {
  SKIP_WITHOUT_GPU();
  Compare(DType::kBF16, OptimizerType::kAdamW, 2e-2, 1e-2, "bf16 adamw");
}

}  // namespace
}  // namespace cohort
