// Each CPU kernel against a plain-loop reference that reads like the math
// (CONTRIBUTING.md, "Kernels"), on seeded random inputs, with a stated tolerance.

#include "kernels/cpu/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/fast_math.h"

namespace cohort::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& ref, double rtol,
                 double atol) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], ref[i], atol + rtol * std::abs(ref[i])) << "element " << i;
  }
}

// Reference: C = alpha op(A) op(B) + beta C with double accumulation.
std::vector<double> GemmRef(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                            const std::vector<float>& a, int64_t lda, const std::vector<float>& b,
                            int64_t ldb, float beta, const std::vector<float>& c, int64_t ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      out[i * ldc + j] = alpha * acc + beta * c[i * ldc + j];
    }
  return out;
}

TEST(Gemm, AllTransposesAgainstReference) {
  const int64_t m = 37, n = 29, k = 51;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
      auto a = Random(static_cast<size_t>(m * k), 1), b = Random(static_cast<size_t>(k * n), 2);
      auto c = Random(static_cast<size_t>(m * n), 3);
      auto ref = GemmRef(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c, ldc);
      Gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, c.data(), ldc);
      ExpectClose(c, ref, 1e-5, 1e-5);
    }
}

double GeluRef(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(BiasAct, ForwardMatchesReference) {
  const int64_t rows = 13, cols = 17;
  auto x = Random(static_cast<size_t>(rows * cols), 4, -3, 3),
       bias = Random(static_cast<size_t>(cols), 5);
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
    std::vector<float> y(x.size());
    BiasActForward(x.data(), bias.data(), y.data(), rows, cols, act);
    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const double z = static_cast<double>(x[r * cols + c]) + bias[c];
        ref[r * cols + c] = act == Activation::kNone   ? z
                            : act == Activation::kRelu ? std::max(z, 0.0)
                                                       : GeluRef(z);
      }
    ExpectClose(y, ref, 1e-6, 1e-6);
    std::vector<float> y2(x.size());
    std::vector<float> z(x.size());
    BiasActForward(x.data(), bias.data(), z.data(), rows, cols, Activation::kNone);
    ActForward(z.data(), y2.data(), rows * cols, act);
    EXPECT_EQ(y, y2) << "ActForward(z) equals the fused form";
  }
}

TEST(BiasAct, BackwardMatchesFiniteDifferences) {
  const int64_t n = 257;
  auto z = Random(static_cast<size_t>(n), 6, -3, 3), dy = Random(static_cast<size_t>(n), 7);
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
    std::vector<float> dz(static_cast<size_t>(n));
    ActBackward(z.data(), dy.data(), dz.data(), n, act);
    std::vector<double> ref(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double h = 1e-4, zi = z[i];
      auto f = [&](double v) {
        return act == Activation::kNone   ? v
               : act == Activation::kRelu ? std::max(v, 0.0)
                                          : GeluRef(v);
      };
      ref[i] = dy[i] * (f(zi + h) - f(zi - h)) / (2 * h);
    }
    ExpectClose(dz, ref, 1e-3, 1e-4);
  }
}

// Error of a float against the exact value, in units of the last place of
// the exact value rounded to float.
double UlpError(float got, double exact) {
  int exponent = 0;
  std::frexp(static_cast<float>(exact), &exponent);
  return std::abs(got - exact) / std::ldexp(1.0, std::max(exponent - 24, -149));
}

// fast_math::Tanh on every 1024th float in [0, 10] and their negatives,
// against std::tanh in double. Every float in [-10, 10] measured 1.16 ulp at
// most; the bound leaves room for a compiler that fuses a * b + c in this
// file (fast_math.h's own users compile with -ffp-contract=off).
TEST(FastMath, TanhIsWithinOneAndAHalfUlpAndOdd) {
  double max_ulp = 0;
  float worst = 0;
  for (uint32_t bits = 0; bits <= std::bit_cast<uint32_t>(10.0f); bits += 1024) {
    const float u = std::bit_cast<float>(bits);
    const float t = fast_math::Tanh(u);
    ASSERT_EQ(std::bit_cast<uint32_t>(fast_math::Tanh(-u)), std::bit_cast<uint32_t>(-t)) << u;
    const double err = UlpError(t, std::tanh(static_cast<double>(u)));
    if (err > max_ulp) {
      max_ulp = err;
      worst = u;
    }
  }
  EXPECT_LE(max_ulp, 1.5) << "at u = " << worst;
}

TEST(FastMath, TanhLimitsAndSpecials) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fast_math::Tanh(kInf), 1.0f);
  EXPECT_EQ(fast_math::Tanh(-kInf), -1.0f);
  EXPECT_EQ(fast_math::Tanh(9.02f), 1.0f);  // float's tanh rounds to 1 above 9.011
  EXPECT_EQ(fast_math::Tanh(-1e30f), -1.0f);
  EXPECT_TRUE(std::isnan(fast_math::Tanh(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(std::bit_cast<uint32_t>(fast_math::Tanh(-0.0f)), std::bit_cast<uint32_t>(-0.0f));
  EXPECT_EQ(fast_math::Tanh(1e-30f), 1e-30f);
  EXPECT_EQ(fast_math::Tanh(1e-40f), 1e-40f);  // denormal
}

// One GELU: the array kernels (vectorised, one clone per ISA) give bitwise
// the floats of the scalar Gelu and GeluGrad, in the vector body and the tail.
TEST(BiasAct, GeluKernelsEqualTheScalarGeluBitwise) {
  const int64_t rows = 7, cols = 149;
  auto x = Random(static_cast<size_t>(rows * cols), 10, -12, 12);
  const auto bias = Random(static_cast<size_t>(cols), 11);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f,
                            -0.0f,
                            1e-40f,
                            -1e-30f,
                            1e4f,
                            -1e4f,
                            1e30f,
                            -1e30f,
                            kInf,
                            -kInf,
                            std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 37] = specials[i];
  const auto dy = Random(x.size(), 12, -2, 2);
  const int64_t n = rows * cols;
  std::vector<float> y(x.size()), dz(x.size()), yb(x.size());
  ActForward(x.data(), y.data(), n, Activation::kGelu);
  ActBackward(x.data(), dy.data(), dz.data(), n, Activation::kGelu);
  BiasActForward(x.data(), bias.data(), yb.data(), rows, cols, Activation::kGelu);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(Gelu(x[i]))) << x[i];
    ASSERT_EQ(std::bit_cast<uint32_t>(dz[i]), std::bit_cast<uint32_t>(dy[i] * GeluGrad(x[i])))
        << x[i];
    ASSERT_EQ(std::bit_cast<uint32_t>(yb[i]), std::bit_cast<uint32_t>(Gelu(x[i] + bias[i % cols])))
        << x[i];
  }
}

TEST(BiasGrad, IsTheColumnSum) {
  const int64_t rows = 9, cols = 11;
  auto dz = Random(static_cast<size_t>(rows * cols), 8);
  std::vector<float> db(static_cast<size_t>(cols), 123.0f);
  BiasGrad(dz.data(), db.data(), rows, cols);
  std::vector<double> ref(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ref[c] += dz[r * cols + c];
  ExpectClose(db, ref, 1e-6, 1e-6);
}

TEST(SoftmaxCrossEntropy, ForwardAndBackwardMatchReference) {
  const int64_t rows = 8, cols = 10;
  auto logits = Random(static_cast<size_t>(rows * cols), 9, -20, 20);  // large: tests stability
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>((r * 7) % cols);
  std::vector<float> probs(logits.size());
  const double loss =
      SoftmaxCrossEntropyForward(logits.data(), labels.data(), probs.data(), rows, cols);
  double ref_loss = 0;
  std::vector<double> ref_probs(logits.size()), ref_grad(logits.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -1e300, sum = 0;
    for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, static_cast<double>(logits[r * cols + c]));
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(logits[r * cols + c] - mx);
    for (int64_t c = 0; c < cols; ++c) {
      ref_probs[r * cols + c] = std::exp(logits[r * cols + c] - mx) / sum;
      ref_grad[r * cols + c] = (ref_probs[r * cols + c] - (c == labels[r] ? 1.0 : 0.0)) / rows;
    }
    ref_loss += -std::log(ref_probs[r * cols + labels[r]]);
  }
  ref_loss /= rows;
  EXPECT_NEAR(loss, ref_loss, 1e-5 * std::abs(ref_loss));
  ExpectClose(probs, ref_probs, 1e-5, 1e-7);
  std::vector<float> grad(logits.size());
  SoftmaxCrossEntropyBackward(probs.data(), labels.data(), grad.data(), rows, cols, 1.0f / rows);
  ExpectClose(grad, ref_grad, 1e-5, 1e-7);
}

TEST(Sgd, MomentumNesterovAndWeightDecayFollowPyTorch) {
  const int64_t n = 64;
  for (bool nesterov : {false, true}) {
    auto p = Random(static_cast<size_t>(n), 10);
    std::vector<float> buf(static_cast<size_t>(n), 0.0f);
    std::vector<double> rp(p.begin(), p.end()), rbuf(static_cast<size_t>(n), 0.0);
    SgdOptions o{0.1f, 0.9f, 0.01f, nesterov};
    for (int step = 0; step < 5; ++step) {
      auto g = Random(static_cast<size_t>(n), 20 + static_cast<uint32_t>(step));
      SgdMomentumUpdate(p.data(), g.data(), buf.data(), n, o, step == 0);
      for (int64_t i = 0; i < n; ++i) {
        const double gi = g[i] + 0.01 * rp[i];
        rbuf[i] = step == 0 ? gi : 0.9 * rbuf[i] + gi;
        rp[i] -= 0.1 * (nesterov ? gi + 0.9 * rbuf[i] : rbuf[i]);
      }
    }
    ExpectClose(p, rp, 1e-5, 1e-6);
  }
}

TEST(AdamW, MatchesTheAlgorithm) {
  const int64_t n = 64;
  auto p = Random(static_cast<size_t>(n), 11);
  std::vector<float> m(static_cast<size_t>(n), 0.0f), v(static_cast<size_t>(n), 0.0f);
  std::vector<double> rp(p.begin(), p.end()), rm(static_cast<size_t>(n), 0),
      rv(static_cast<size_t>(n), 0);
  AdamWOptions o{1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f};
  for (int step = 1; step <= 6; ++step) {
    auto g = Random(static_cast<size_t>(n), 40 + static_cast<uint32_t>(step));
    AdamWUpdate(p.data(), g.data(), m.data(), v.data(), n, o, step);
    for (int64_t i = 0; i < n; ++i) {
      rp[i] *= 1 - 1e-2 * 0.1;
      rm[i] = 0.9 * rm[i] + 0.1 * g[i];
      rv[i] = 0.999 * rv[i] + 0.001 * static_cast<double>(g[i]) * g[i];
      const double mhat = rm[i] / (1 - std::pow(0.9, step)),
                   vhat = rv[i] / (1 - std::pow(0.999, step));
      rp[i] -= 1e-2 * mhat / (std::sqrt(vhat) + 1e-8);
    }
  }
  ExpectClose(p, rp, 1e-5, 1e-6);
}

// ---- Mixed precision and many-tensor kernels (the CPU twins of the GPU path) --

std::vector<uint16_t> ToHalf(DType t, const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    h[i] = t == DType::kBF16 ? FloatToBF16(x[i]).bits : FloatToF16(x[i]).bits;
  return h;
}
double FromHalf(DType t, uint16_t bits) {
  return t == DType::kBF16 ? BF16ToFloat(BFloat16{bits}) : F16ToFloat(Float16{bits});
}

TEST(GemmMixed, HalfInputsAccumulateInFloat) {
  const int64_t m = 19, n = 23, k = 300;  // k large enough that fp16 accumulation would show
  for (DType t : {DType::kBF16, DType::kF16})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
        auto a = ToHalf(t, Random(static_cast<size_t>(m * k), 61)),
             b = ToHalf(t, Random(static_cast<size_t>(k * n), 62));
        std::vector<float> af(a.size()), bf(b.size());
        for (size_t i = 0; i < a.size(); ++i) af[i] = static_cast<float>(FromHalf(t, a[i]));
        for (size_t i = 0; i < b.size(); ++i) bf[i] = static_cast<float>(FromHalf(t, b[i]));
        auto c = Random(static_cast<size_t>(m * n), 63);
        auto ref = GemmRef(ta, tb, m, n, k, 1.5f, af, lda, bf, ldb, 0.5f, c, ldc);
        GemmMixed(ta, tb, m, n, k, 1.5f, t, a.data(), lda, b.data(), ldb, 0.5f, DType::kF32,
                  c.data(), ldc);
        ExpectClose(c, ref, 1e-5, 1e-4);
        // A 16-bit C: the same product, rounded once (half an ulp of the type, plus fp32 noise).
        auto c16 = ToHalf(t, Random(static_cast<size_t>(m * n), 63));
        std::vector<float> c16f(c16.size());
        for (size_t i = 0; i < c16.size(); ++i) c16f[i] = static_cast<float>(FromHalf(t, c16[i]));
        auto ref16 = GemmRef(ta, tb, m, n, k, 1.5f, af, lda, bf, ldb, 0.5f, c16f, ldc);
        GemmMixed(ta, tb, m, n, k, 1.5f, t, a.data(), lda, b.data(), ldb, 0.5f, t, c16.data(), ldc);
        const double half_ulp = t == DType::kBF16 ? 1.0 / 256 : 1.0 / 2048;
        for (size_t i = 0; i < c16.size(); ++i)
          ASSERT_NEAR(FromHalf(t, c16[i]), ref16[i], half_ulp * std::abs(ref16[i]) + 1e-4) << i;
      }
}

TEST(Cast, RoundTripsWithScaleAndKeepsSpecials) {
  auto x = Random(1000, 64, -70000, 70000);
  x[0] = std::nanf("");
  x[1] = INFINITY;
  x[2] = 1e-30f;  // fp16 underflow to zero, bf16 keeps it
  for (DType t : {DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> h(x.size());
    CastFromFloat(x.data(), t, h.data(), static_cast<int64_t>(x.size()), 0.5f);
    std::vector<float> back(x.size());
    CastToFloat(t, h.data(), back.data(), static_cast<int64_t>(x.size()), 2.0f);
    EXPECT_TRUE(std::isnan(back[0]));
    EXPECT_EQ(back[1], INFINITY);
    const double rel = t == DType::kBF16 ? 1.0 / 256 : 1.0 / 2048;
    for (size_t i = 2; i < x.size(); ++i) {
      const double half = x[i] * 0.5;
      if (t == DType::kF16 && std::abs(half) > 65504) {
        EXPECT_TRUE(std::isinf(back[i])) << i;  // fp16 overflows to inf
        continue;
      }
      const double atol = t == DType::kF16 ? 2 * 6.0e-8 : 0;  // fp16 subnormal spacing, times scale
      ASSERT_NEAR(back[i], 2 * half, 2 * rel * std::abs(half) + atol) << i;
    }
  }
}

TEST(ScaleCheckFinite, ScalesAndFlagsOnlyNonFinite) {
  auto y = Random(100, 65);
  int32_t flag = 0;
  auto ref = y;
  ScaleCheckFinite(y.data(), 100, 0.25f, &flag);
  EXPECT_EQ(flag, 0);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], ref[i] * 0.25f);
  for (float bad : {INFINITY, -INFINITY, std::nanf("")}) {
    flag = 0;
    y[37] = bad;
    ScaleCheckFinite(y.data(), 100, 0.25f, &flag);
    EXPECT_EQ(flag, 1) << bad;
    y[37] = 1;
  }
  flag = 0;
  y[5] = 3e38f;  // finite, overflows when scaled
  ScaleCheckFinite(y.data(), 100, 1e10f, &flag);
  EXPECT_EQ(flag, 1);
  flag = 1;  // never cleared
  y = Random(100, 66);
  ScaleCheckFinite(y.data(), 100, 1.0f, &flag);
  EXPECT_EQ(flag, 1);
}

TEST(MultiTensor, SgdAndAdamWMatchPerTensorLoops) {
  const std::vector<int64_t> sizes = {1, 7, 4096, 65537, 3};
  std::vector<std::vector<float>> p, g, m, v, buf;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto n = static_cast<size_t>(sizes[i]);
    p.push_back(Random(n, 70 + static_cast<uint32_t>(i)));
    g.push_back(Random(n, 80 + static_cast<uint32_t>(i)));
    m.push_back(std::vector<float>(n, 0.0f));
    v.push_back(std::vector<float>(n, 0.0f));
    buf.push_back(std::vector<float>(n, 0.0f));
  }
  // References: the plain math, per element, in double.
  auto rp = p;
  std::vector<std::vector<double>> rm(sizes.size()), rv(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    rm[i].assign(p[i].size(), 0), rv[i].assign(p[i].size(), 0);
  AdamWOptions o{1e-2f, 0.9f, 0.99f, 1e-8f, 0.05f};
  for (int step = 1; step <= 3; ++step) {
    std::vector<AdamWTensor> ts;
    for (size_t i = 0; i < sizes.size(); ++i)
      ts.push_back({p[i].data(), g[i].data(), m[i].data(), v[i].data(), sizes[i]});
    MultiTensorAdamWUpdate(ts.data(), static_cast<int>(ts.size()), o, step);
    for (size_t i = 0; i < sizes.size(); ++i)
      for (size_t j = 0; j < p[i].size(); ++j) {
        double x = rp[i][j] * (1 - 1e-2 * 0.05);
        rm[i][j] = 0.9 * rm[i][j] + 0.1 * g[i][j];
        rv[i][j] = 0.99 * rv[i][j] + 0.01 * double(g[i][j]) * g[i][j];
        x -= 1e-2 * (rm[i][j] / (1 - std::pow(0.9, step))) /
             (std::sqrt(rv[i][j] / (1 - std::pow(0.99, step))) + 1e-8);
        rp[i][j] = static_cast<float>(x);
      }
  }
  for (size_t i = 0; i < sizes.size(); ++i)
    ExpectClose(p[i], std::vector<double>(rp[i].begin(), rp[i].end()), 1e-5, 1e-5);

  auto sp = p;
  SgdOptions so{0.1f, 0.9f, 0.0f, true};
  std::vector<SgdTensor> st;
  for (size_t i = 0; i < sizes.size(); ++i)
    st.push_back({sp[i].data(), g[i].data(), buf[i].data(), sizes[i]});
  MultiTensorSgdMomentumUpdate(st.data(), static_cast<int>(st.size()), so, true);
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<double> ref(p[i].size());
    for (size_t j = 0; j < ref.size(); ++j)
      ref[j] = p[i][j] - 0.1 * (g[i][j] + 0.9 * g[i][j]);  // nesterov, buf = g
    ExpectClose(sp[i], ref, 1e-6, 1e-6);
  }
}

TEST(Bucket, PackThenUnpackIsTheIdentityAndLaysOutInOrder) {
  const std::vector<int64_t> counts = {3, 0, 1000, 17};
  std::vector<std::vector<float>> src;
  for (size_t i = 0; i < counts.size(); ++i)
    src.push_back(Random(static_cast<size_t>(counts[i]), 90 + static_cast<uint32_t>(i)));
  std::vector<const float*> sp;
  for (auto& s : src) sp.push_back(s.data());
  std::vector<float> flat(1020, -1.0f);
  Pack(sp.data(), counts.data(), static_cast<int>(counts.size()), flat.data());
  size_t off = 0;
  for (size_t i = 0; i < counts.size(); ++i)
    for (int64_t j = 0; j < counts[i]; ++j) ASSERT_EQ(flat[off++], src[i][j]) << i << " " << j;
  std::vector<std::vector<float>> dst;
  for (auto c : counts) dst.push_back(std::vector<float>(static_cast<size_t>(c), 0.0f));
  std::vector<float*> dp;
  for (auto& d : dst) dp.push_back(d.data());
  Unpack(flat.data(), dp.data(), counts.data(), static_cast<int>(counts.size()));
  EXPECT_EQ(dst, src);
}

TEST(SoftmaxCrossEntropy, LossToPointerEqualsReturnedLoss) {
  const int64_t rows = 5, cols = 7;
  auto logits = Random(static_cast<size_t>(rows * cols), 95, -5, 5);
  std::vector<int32_t> labels = {0, 6, 3, 3, 1};
  std::vector<float> probs(logits.size());
  float loss = 0;
  SoftmaxCrossEntropyForward(logits.data(), labels.data(), probs.data(), rows, cols, &loss);
  EXPECT_EQ(loss, static_cast<float>(SoftmaxCrossEntropyForward(logits.data(), labels.data(),
                                                                probs.data(), rows, cols)));
}

}  // namespace
}  // namespace cohort::kernels
