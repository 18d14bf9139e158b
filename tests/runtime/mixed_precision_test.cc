// Mixed precision: the fp16 loss scaler, the train.precision
// and train.loss_scale config keys, and the Mlp's 16-bit compute path.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "runtime/config.h"
#include "runtime/loss_scaler.h"
#include "runtime/mlp.h"

namespace cohort {
namespace {

LossScaleConfig Scaling(double initial, int64_t interval) {
  LossScaleConfig c;
  c.initial = initial;
  c.growth_interval = interval;
  return c;
}

TEST(LossScaler, OverflowSkipsTheStepAndBacksOff) {
  LossScaler s(Scaling(65536, 3));
  EXPECT_TRUE(s.Update(false));
  EXPECT_EQ(s.clean_steps(), 1);
  EXPECT_FALSE(s.Update(true));  // skip
  EXPECT_EQ(s.scale(), 32768);
  EXPECT_EQ(s.clean_steps(), 0);  // the count of clean steps restarts
  EXPECT_FALSE(s.Update(true));
  EXPECT_EQ(s.scale(), 16384);
  EXPECT_EQ(s.skipped_steps(), 2);
}

TEST(LossScaler, GrowsAfterTheIntervalOfCleanSteps) {
  LossScaler s(Scaling(1024, 3));
  EXPECT_TRUE(s.Update(false));
  EXPECT_TRUE(s.Update(false));
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_TRUE(s.Update(false));  // the third clean step in a row
  EXPECT_EQ(s.scale(), 2048);
  EXPECT_EQ(s.clean_steps(), 0);
  // An overflow in between restarts the interval.
  EXPECT_TRUE(s.Update(false));
  EXPECT_TRUE(s.Update(false));
  EXPECT_FALSE(s.Update(true));
  EXPECT_EQ(s.scale(), 1024);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(s.Update(false));
  EXPECT_EQ(s.scale(), 1024);
  EXPECT_TRUE(s.Update(false));
  EXPECT_EQ(s.scale(), 2048);
  EXPECT_EQ(s.skipped_steps(), 1);
}

TEST(LossScaler, NeverLeavesItsBounds) {
  LossScaler low(Scaling(4, 1000));
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(low.Update(true));
  EXPECT_EQ(low.scale(), kMinLossScale);  // 4 -> 2 -> 1 -> 1 ...
  EXPECT_FALSE(low.stuck());
  LossScaler high(Scaling(kMaxLossScale / 2, 1));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(high.Update(false));
  EXPECT_EQ(high.scale(), kMaxLossScale);
}

TEST(LossScaler, GivesUpAfterRepeatedOverflowAtTheFloor) {
  LossScaler s(Scaling(kMinLossScale, 10));
  for (int64_t i = 1; i < kMaxSkipsAtMinLossScale; ++i) s.Update(true);
  EXPECT_FALSE(s.stuck());
  EXPECT_TRUE(s.Update(false));  // one clean step resets the count
  for (int64_t i = 0; i < kMaxSkipsAtMinLossScale; ++i) s.Update(true);
  EXPECT_TRUE(s.stuck());
}

TEST(LossScaler, RestoreClampsToTheBounds) {
  LossScaler s(Scaling(65536, 4));
  s.Restore(512, 3);
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.clean_steps(), 3);
  EXPECT_TRUE(s.Update(false));
  EXPECT_EQ(s.scale(), 1024);  // the restored count carried on
  s.Restore(1e30, 99);
  EXPECT_EQ(s.scale(), kMaxLossScale);
  EXPECT_EQ(s.clean_steps(), 3);
}

constexpr char kBase[] = R"(seed: 7
model: {layers: [8, 4, 3]}
optimizer: {type: sgd, lr: 0.1}
train:
  steps: 10
  global_batch: 16
)";

Result<Config> WithTrain(const std::string& extra) { return ParseConfig(kBase + extra, "p.yaml"); }

TEST(MixedPrecisionConfig, PrecisionValues) {
  EXPECT_EQ(WithTrain("")->train.precision, DType::kF32);
  EXPECT_EQ(WithTrain("  precision: fp32\n")->train.precision, DType::kF32);
  EXPECT_EQ(WithTrain("  precision: bf16\n")->train.precision, DType::kBF16);
  EXPECT_EQ(WithTrain("  precision: fp16\n")->train.precision, DType::kF16);
  auto bad = WithTrain("  precision: fp8\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "config p.yaml:7: 'train.precision' must be fp32, bf16 or fp16, not 'fp8'");
}

TEST(MixedPrecisionConfig, LossScaleDefaultsAndValues) {
  auto d = WithTrain("  precision: fp16\n");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->train.loss_scale.initial, kDefaultLossScale);
  EXPECT_EQ(d->train.loss_scale.growth, kDefaultLossScaleGrowth);
  EXPECT_EQ(d->train.loss_scale.backoff, kDefaultLossScaleBackoff);
  EXPECT_EQ(d->train.loss_scale.growth_interval, kDefaultLossScaleGrowthInterval);
  auto c = WithTrain(
      "  precision: fp16\n  loss_scale: {initial: 1024, growth: 4, backoff: 0.25, growth_interval: "
      "50}\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->train.loss_scale.initial, 1024);
  EXPECT_EQ(c->train.loss_scale.growth, 4);
  EXPECT_EQ(c->train.loss_scale.backoff, 0.25);
  EXPECT_EQ(c->train.loss_scale.growth_interval, 50);
}

TEST(MixedPrecisionConfig, LossScaleErrorsNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"  precision: bf16\n  loss_scale: {initial: 8}\n",
       "'train.loss_scale' applies to precision: fp16 only"},
      {"  loss_scale: {initial: 8}\n", "'train.loss_scale' applies to precision: fp16 only"},
      {"  precision: fp16\n  loss_scale: {initial: 0.5}\n",
       "'train.loss_scale.initial' must be in [1, 4294967296]"},
      {"  precision: fp16\n  loss_scale: {initial: 1e12}\n",
       "'train.loss_scale.initial' must be in [1, 4294967296]"},
      {"  precision: fp16\n  loss_scale: {growth: 1}\n",
       "'train.loss_scale.growth' must be in (1, 16]"},
      {"  precision: fp16\n  loss_scale: {backoff: 1}\n",
       "'train.loss_scale.backoff' must be in (0, 1)"},
      {"  precision: fp16\n  loss_scale: {backoff: 0}\n",
       "'train.loss_scale.backoff' must be in (0, 1)"},
      {"  precision: fp16\n  loss_scale: {growth_interval: 0}\n",
       "'train.loss_scale.growth_interval' must be in [1, 1000000000]"},
      {"  precision: fp16\n  loss_scale: {growth_intervl: 5}\n",
       "unknown key 'train.loss_scale.growth_intervl' (did you mean "
       "'train.loss_scale.growth_interval'?)"},
      {"  precision: fp16\n  loss_scale: 8\n", "must be a mapping"},
      {"  precision: fp16\n  loss_scale: {initial: big}\n",
       "'train.loss_scale.initial' must be a number"},
  };
  for (const auto& [extra, needle] : cases) {
    auto c = WithTrain(extra);
    ASSERT_FALSE(c.ok()) << extra;
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("config p.yaml:"), std::string::npos)
        << c.status().message();
  }
}

// fp32 configs hash as before train.precision existed (checkpoints and the
// cross-rank check compare the hash); every other precision hashes apart.
TEST(MixedPrecisionConfig, HashSeparatesPrecisionsButKeepsFp32) {
  const uint64_t none = WithTrain("")->Hash();
  EXPECT_EQ(WithTrain("  precision: fp32\n")->Hash(), none);
  EXPECT_EQ(WithTrain("")->Canonical().find("precision"), std::string::npos);
  const uint64_t bf16 = WithTrain("  precision: bf16\n")->Hash();
  const uint64_t fp16 = WithTrain("  precision: fp16\n")->Hash();
  const uint64_t fp16b = WithTrain("  precision: fp16\n  loss_scale: {initial: 1024}\n")->Hash();
  EXPECT_NE(bf16, none);
  EXPECT_NE(fp16, none);
  EXPECT_NE(fp16, bf16);
  EXPECT_NE(fp16b, fp16);
}

struct Case {
  Mlp mlp{{16, 32, 24, 5}, kernels::Activation::kGelu};
  std::vector<float> p, x;
  std::vector<int32_t> y;
  int64_t batch = 12;
  Case() {
    p.resize(static_cast<size_t>(mlp.num_params()));
    mlp.Init(p.data(), 5);
    std::mt19937 rng(9);
    std::normal_distribution<float> d;
    x.resize(static_cast<size_t>(batch * 16));
    for (auto& v : x) v = d(rng);
    for (int64_t i = 0; i < batch; ++i) y.push_back(static_cast<int32_t>(i % 5));
  }
  std::vector<uint16_t> Half(DType t) const {
    std::vector<uint16_t> h(p.size());
    kernels::CastFromFloat(p.data(), t, h.data(), static_cast<int64_t>(p.size()), 1.0f);
    return h;
  }
  double Run(const Precision* prec, std::vector<float>* g) {
    g->assign(p.size(), 0.0f);
    auto loss =
        mlp.ForwardBackward(p.data(), x.data(), y.data(), batch, g->data(), nullptr, nullptr, prec);
    EXPECT_TRUE(loss.ok());
    return *loss;
  }
};

// The 16-bit path is really taken (its gradients differ from fp32's) and
// stays close: bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%)
// and fp16 11 bits (2^-12), and each GEMM output sums k products of rounded
// inputs in fp32, so the gradients' worst relative error is a few times the
// input rounding: bounds of 3% (bf16) and 0.5% (fp16) of the largest gradient.
TEST(MlpMixedPrecision, CloseToFp32ButNotEqual) {
  Case c;
  std::vector<float> ref;
  const double ref_loss = c.Run(nullptr, &ref);
  float ref_max = 0;
  for (float v : ref) ref_max = std::max(ref_max, std::abs(v));
  for (auto [type, tol] : {std::pair{DType::kBF16, 3e-2}, std::pair{DType::kF16, 5e-3}}) {
    std::vector<uint16_t> half = c.Half(type);
    Precision prec{type, half.data(), 1.0f};
    std::vector<float> g;
    const double loss = c.Run(&prec, &g);
    EXPECT_NEAR(loss, ref_loss, tol * ref_loss) << DTypeName(type);
    EXPECT_NE(loss, ref_loss) << DTypeName(type) << ": the 16-bit path was not used";
    double worst = 0;
    for (size_t i = 0; i < g.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::abs(g[i] - ref[i])));
    EXPECT_LE(worst, tol * ref_max) << DTypeName(type);
    EXPECT_GT(worst, 0) << DTypeName(type);
  }
}

// A power-of-two loss scale multiplies every gradient exactly (rounding
// commutes with it away from overflow and subnormals; bf16 has fp32's
// exponent range, so none occur here), and the loss is the unscaled one.
TEST(MlpMixedPrecision, LossScaleScalesTheGradientsExactly) {
  Case c;
  for (DType type : {DType::kBF16}) {
    std::vector<uint16_t> half = c.Half(type);
    Precision one{type, half.data(), 1.0f};
    Precision scaled{type, half.data(), 256.0f};
    std::vector<float> g1, g256;
    const double l1 = c.Run(&one, &g1);
    const double l256 = c.Run(&scaled, &g256);
    EXPECT_EQ(l1, l256);
    for (size_t i = 0; i < g1.size(); ++i)
      ASSERT_EQ(g256[i], 256.0f * g1[i]) << DTypeName(type) << " param " << i;
  }
}

// fp16 with too large a scale overflows into inf gradients, which
// ScaleCheckFinite flags after unscaling.
TEST(MlpMixedPrecision, Fp16OverflowIsFlagged) {
  Case c;
  std::vector<uint16_t> half = c.Half(DType::kF16);
  Precision prec{DType::kF16, half.data(), 1e9f};
  std::vector<float> g;
  c.Run(&prec, &g);
  int32_t found = 0;
  kernels::ScaleCheckFinite(g.data(), static_cast<int64_t>(g.size()), 1e-9f, &found);
  EXPECT_EQ(found, 1);
}

}  // namespace
}  // namespace cohort
