#include "runtime/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/optimizer.h"
#include "runtime/safetensors.h"

namespace cohort {
namespace {

TEST(Mlp, LayoutAndNames) {
  Mlp m({784, 1024, 1024, 10}, kernels::Activation::kRelu);
  EXPECT_EQ(m.num_params(), 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10);
  ASSERT_EQ(m.params().size(), 6u);
  EXPECT_EQ(m.params()[2].name, "layers.1.weight");
  EXPECT_EQ(m.params()[2].offset, 784 * 1024 + 1024);
}

// The analytic gradient equals central finite differences of the loss, in
// double-checked fp32 (relative tolerance stated below), for both activations.
TEST(Mlp, GradientMatchesFiniteDifferences) {
  for (auto act : {kernels::Activation::kRelu, kernels::Activation::kGelu}) {
    Mlp m({6, 5, 4, 3}, act);
    std::vector<float> p(static_cast<size_t>(m.num_params())), g(p.size());
    m.Init(p.data(), 3);
    std::mt19937 rng(1);
    std::normal_distribution<float> d;
    std::vector<float> x(4 * 6);
    for (auto& v : x) v = d(rng);
    std::vector<int32_t> y = {0, 2, 1, 2};
    ASSERT_TRUE(m.ForwardBackward(p.data(), x.data(), y.data(), 4, g.data()).ok());
    int checked = 0, kinks = 0;
    auto fd = [&](size_t i, float h) {
      const float keep = p[i];
      p[i] = keep + h;
      const double up = *m.Loss(p.data(), x.data(), y.data(), 4);
      p[i] = keep - h;
      const double down = *m.Loss(p.data(), x.data(), y.data(), 4);
      p[i] = keep;
      return (up - down) / (2 * h);
    };
    for (size_t i = 0; i < p.size(); ++i) {
      const double coarse = fd(i, 1e-2f), fine = fd(i, 5e-3f);
      // A ReLU kink inside [p-h, p+h] makes the two differences disagree; the
      // gradient is not defined there, so such a point is skipped (and counted).
      if (std::abs(coarse - fine) > 1e-3) {
        ++kinks;
        continue;
      }
      EXPECT_NEAR(g[i], fine, 2e-3 + 2e-2 * std::abs(fine)) << "param " << i;
      ++checked;
    }
    EXPECT_LE(kinks, 3);
    checked += kinks;
    EXPECT_EQ(checked, m.num_params());
  }
}

TEST(Mlp, SgdDrivesTheLossDown) {
  Mlp m({8, 16, 3}, kernels::Activation::kRelu);
  std::vector<float> p(static_cast<size_t>(m.num_params())), g(p.size());
  m.Init(p.data(), 1);
  std::mt19937 rng(2);
  std::normal_distribution<float> d;
  std::vector<float> x(32 * 8);
  for (auto& v : x) v = d(rng);
  std::vector<int32_t> y(32);
  for (int i = 0; i < 32; ++i)
    y[static_cast<size_t>(i)] =
        x[static_cast<size_t>(i) * 8] > 0 ? 1 : (x[static_cast<size_t>(i) * 8 + 1] > 0 ? 2 : 0);
  OptimizerConfig oc;
  oc.lr = 0.1f;
  oc.momentum = 0.9f;
  auto opt = std::move(MakeOptimizer(oc, m.num_params())).value();
  const double first = *m.ForwardBackward(p.data(), x.data(), y.data(), 32, g.data());
  double last = first;
  for (int s = 0; s < 200; ++s) {
    opt->Step(p.data(), g.data());
    last = *m.ForwardBackward(p.data(), x.data(), y.data(), 32, g.data());
  }
  EXPECT_LT(last, 0.2 * first);
}

TEST(Safetensors, RoundTripAndCorruption) {
  const std::string path = testing::TempDir() + "/cohort_st.safetensors";
  Tensor a = Tensor::Zeros({2, 3});
  for (int i = 0; i < 6; ++i) a.data<float>()[i] = static_cast<float>(i) * 0.5f;
  Tensor b = Tensor::Zeros({4}, DType::kI64);
  b.data<int64_t>()[3] = -7;
  ASSERT_TRUE(WriteSafetensors(path, {{"w", a}, {"step", b}}, {{"k", "v"}}).ok());
  auto f = ReadSafetensors(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->tensors.size(), 2u);
  EXPECT_EQ(f->metadata.at("k"), "v");
  const Tensor* w = f->Find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape(), (Shape{2, 3}));
  EXPECT_EQ(w->data<float>()[5], 2.5f);
  EXPECT_EQ(f->Find("step")->data<int64_t>()[3], -7);
  // Flip a data byte: refused.
  std::string bytes;
  {
    std::FILE* fp = std::fopen(path.c_str(), "r+b");
    std::fseek(fp, -3, SEEK_END);
    std::fputc(0x55, fp);
    std::fclose(fp);
  }
  auto bad = ReadSafetensors(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("checksum"), std::string::npos);
}

}  // namespace
}  // namespace cohort
