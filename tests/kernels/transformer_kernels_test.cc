// The GPT-2 kernels (kernels/cpu/transformer.h) against plain-loop references
// that read like the math (CONTRIBUTING.md, "Kernels"), computed in double on the same
// seeded fp32 inputs. Each backward reference is itself checked against
// central finite differences of its forward reference, so a formula wrong in
// both the kernel and the reference fails.
//
// Tolerances: |kernel - ref| <= atol + rtol * |ref|, stated at each test;
// rtol 1e-5 unless said otherwise (fp32 sums over C or T of O(1) terms).
// Finite differences: step 1e-6 in double, agreement to 1e-6.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/transformer.h"

namespace cohort::kernels {
namespace {

using Vec = std::vector<double>;

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<int32_t> RandomTokens(size_t n, int32_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, V - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Vec D(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

void ExpectClose(const std::vector<float>& got, const Vec& ref, double rtol, double atol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], ref[i], atol + rtol * std::abs(ref[i])) << what << ", element " << i;
  }
}

// (f(x + h e_i) - f(x - h e_i)) / 2h for every i.
Vec NumericGrad(const std::function<double(const Vec&)>& f, Vec x) {
  const double h = 1e-6;
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double up = f(x);
    x[i] = x0 - h;
    const double down = f(x);
    x[i] = x0;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

void ExpectGradMatches(const Vec& analytic, const Vec& numeric, const std::string& what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  for (size_t i = 0; i < analytic.size(); ++i) {
    ASSERT_NEAR(analytic[i], numeric[i], 1e-6 * (1 + std::abs(numeric[i])))
        << what << ", element " << i;
  }
}

double Dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---- References -------------------------------------------------------------

void EmbeddingForwardRef(const std::vector<int32_t>& tokens, const Vec& wte, const Vec& wpe,
                         Vec& out, int64_t B, int64_t T, int64_t C) {
  out.assign(static_cast<size_t>(B * T * C), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c)
        out[(b * T + t) * C + c] = wte[tokens[b * T + t] * C + c] + wpe[t * C + c];
}

// Adds into dwte and dwpe.
void EmbeddingBackwardRef(const Vec& dout, const std::vector<int32_t>& tokens, Vec& dwte, Vec& dwpe,
                          int64_t B, int64_t T, int64_t C) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) {
        dwte[tokens[b * T + t] * C + c] += dout[(b * T + t) * C + c];
        dwpe[t * C + c] += dout[(b * T + t) * C + c];
      }
}

struct LayerNormOut {
  Vec y, mean, rstd;
};
LayerNormOut LayerNormForwardRef(const Vec& x, const Vec& w, const Vec& b, int64_t rows, int64_t C,
                                 double eps) {
  LayerNormOut o{Vec(x.size()), Vec(static_cast<size_t>(rows)), Vec(static_cast<size_t>(rows))};
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0;
    for (int64_t c = 0; c < C; ++c) mean += x[r * C + c];
    mean /= static_cast<double>(C);
    double var = 0;  // biased: divided by C
    for (int64_t c = 0; c < C; ++c) var += (x[r * C + c] - mean) * (x[r * C + c] - mean);
    var /= static_cast<double>(C);
    const double rstd = 1 / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; ++c) o.y[r * C + c] = (x[r * C + c] - mean) * rstd * w[c] + b[c];
    o.mean[r] = mean;
    o.rstd[r] = rstd;
  }
  return o;
}

// Adds into dx, dw, db. With xhat = (x - mean) rstd and g = dy w:
// dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)).
void LayerNormBackwardRef(const Vec& dy, const Vec& x, const Vec& w, const Vec& mean,
                          const Vec& rstd, Vec& dx, Vec& dw, Vec& db, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    double g_mean = 0, gx_mean = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = (x[r * C + c] - mean[r]) * rstd[r];
      g_mean += dy[r * C + c] * w[c] / static_cast<double>(C);
      gx_mean += dy[r * C + c] * w[c] * xhat / static_cast<double>(C);
    }
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = (x[r * C + c] - mean[r]) * rstd[r];
      dx[r * C + c] += rstd[r] * (dy[r * C + c] * w[c] - g_mean - xhat * gx_mean);
      dw[c] += dy[r * C + c] * xhat;
      db[c] += dy[r * C + c];
    }
  }
}

double GeluRef(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
double GeluGradRef(double x) {
  const double u = std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x);
  const double du = std::sqrt(2 / M_PI) * (1 + 3 * 0.044715 * x * x);
  return 0.5 * (1 + std::tanh(u)) + 0.5 * x * (1 - std::tanh(u) * std::tanh(u)) * du;
}

// qkv (B, T, 3C): q of head h at [.., h*hs + d], k at C + .., v at 2C + ..
struct QkvIndex {
  int64_t T, C, hs;
  size_t q(int64_t b, int64_t t, int64_t h, int64_t d) const {
    return static_cast<size_t>((b * T + t) * 3 * C + h * hs + d);
  }
  size_t k(int64_t b, int64_t t, int64_t h, int64_t d) const {
    return q(b, t, h, d) + static_cast<size_t>(C);
  }
  size_t v(int64_t b, int64_t t, int64_t h, int64_t d) const {
    return q(b, t, h, d) + static_cast<size_t>(2 * C);
  }
  size_t o(int64_t b, int64_t t, int64_t h, int64_t d) const {
    return static_cast<size_t>((b * T + t) * C + h * hs + d);
  }
};

struct AttentionOut {
  Vec out, att;  // (B, T, C), (B, NH, T, T)
};
AttentionOut AttentionForwardRef(const Vec& qkv, int64_t B, int64_t T, int64_t C, int64_t NH) {
  const int64_t hs = C / NH;
  const QkvIndex ix{T, C, hs};
  AttentionOut o{Vec(static_cast<size_t>(B * T * C), 0.0),
                 Vec(static_cast<size_t>(B * NH * T * T), 0.0)};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t1 = 0; t1 < T; ++t1) {
        double* att = &o.att[static_cast<size_t>(((b * NH + h) * T + t1) * T)];
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t t2 = 0; t2 <= t1; ++t2) {  // causal: t2 > t1 stays 0
          double score = 0;
          for (int64_t d = 0; d < hs; ++d) score += qkv[ix.q(b, t1, h, d)] * qkv[ix.k(b, t2, h, d)];
          att[t2] = score / std::sqrt(static_cast<double>(hs));
          mx = std::max(mx, att[t2]);
        }
        double sum = 0;
        for (int64_t t2 = 0; t2 <= t1; ++t2) {
          att[t2] = std::exp(att[t2] - mx);
          sum += att[t2];
        }
        for (int64_t t2 = 0; t2 <= t1; ++t2) att[t2] /= sum;
        for (int64_t d = 0; d < hs; ++d) {
          double acc = 0;
          for (int64_t t2 = 0; t2 <= t1; ++t2) acc += att[t2] * qkv[ix.v(b, t2, h, d)];
          o.out[ix.o(b, t1, h, d)] = acc;
        }
      }
  return o;
}

// The gradient w.r.t. qkv given dout, through att = softmax(q k^T / sqrt(hs)).
Vec AttentionBackwardRef(const Vec& dout, const Vec& qkv, const Vec& att_all, int64_t B, int64_t T,
                         int64_t C, int64_t NH) {
  const int64_t hs = C / NH;
  const QkvIndex ix{T, C, hs};
  Vec dqkv(qkv.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t1 = 0; t1 < T; ++t1) {
        const double* att = &att_all[static_cast<size_t>(((b * NH + h) * T + t1) * T)];
        Vec datt(static_cast<size_t>(t1 + 1));
        for (int64_t t2 = 0; t2 <= t1; ++t2) {
          for (int64_t d = 0; d < hs; ++d) {
            datt[t2] += dout[ix.o(b, t1, h, d)] * qkv[ix.v(b, t2, h, d)];
            dqkv[ix.v(b, t2, h, d)] += att[t2] * dout[ix.o(b, t1, h, d)];
          }
        }
        // softmax: dscore_j = att_j (datt_j - sum_i att_i datt_i)
        double s = 0;
        for (int64_t t2 = 0; t2 <= t1; ++t2) s += att[t2] * datt[t2];
        for (int64_t t2 = 0; t2 <= t1; ++t2) {
          const double dscore = att[t2] * (datt[t2] - s) / std::sqrt(static_cast<double>(hs));
          for (int64_t d = 0; d < hs; ++d) {
            dqkv[ix.q(b, t1, h, d)] += dscore * qkv[ix.k(b, t2, h, d)];
            dqkv[ix.k(b, t2, h, d)] += dscore * qkv[ix.q(b, t1, h, d)];
          }
        }
      }
  return dqkv;
}

struct CrossEntropyOut {
  double loss;
  Vec dlogits;  // of the mean loss: (softmax - onehot) / rows
};
CrossEntropyOut CrossEntropyRef(const Vec& logits, const std::vector<int32_t>& targets,
                                int64_t rows, int64_t V) {
  CrossEntropyOut o{0.0, Vec(logits.size())};
  for (int64_t r = 0; r < rows; ++r) {
    double mx = logits[r * V];
    for (int64_t c = 0; c < V; ++c) mx = std::max(mx, logits[r * V + c]);
    double sum = 0;
    for (int64_t c = 0; c < V; ++c) sum += std::exp(logits[r * V + c] - mx);
    o.loss += (std::log(sum) + mx - logits[r * V + targets[r]]) / static_cast<double>(rows);
    for (int64_t c = 0; c < V; ++c) {
      const double p = std::exp(logits[r * V + c] - mx) / sum;
      o.dlogits[r * V + c] = (p - (c == targets[r] ? 1.0 : 0.0)) / static_cast<double>(rows);
    }
  }
  return o;
}

// ---- Embedding ---------------------------------------------------------------

// Tolerance: forward exact (one fp32 addition, as the reference rounds it);
// backward 1e-5 relative + 1e-6 (sums over b and repeated tokens).
TEST(TransformerKernels, EmbeddingForwardBackward) {
  struct Shape {
    int64_t B, T, C, V;
  };
  for (Shape s : {Shape{2, 5, 12, 7}, Shape{1, 1, 3, 1}, Shape{4, 9, 37, 3}}) {
    const std::string what =
        "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C);
    const auto n = static_cast<size_t>(s.B * s.T * s.C);
    const auto tokens = RandomTokens(static_cast<size_t>(s.B * s.T), static_cast<int32_t>(s.V), 1);
    const auto wte = Random(static_cast<size_t>(s.V * s.C), 2),
               wpe = Random(static_cast<size_t>(s.T * s.C), 3);
    std::vector<float> out(n);
    EmbeddingForward(tokens.data(), wte.data(), wpe.data(), out.data(), s.B, s.T, s.C);
    Vec ref;
    EmbeddingForwardRef(tokens, D(wte), D(wpe), ref, s.B, s.T, s.C);
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(out[i], static_cast<float>(ref[i])) << what << " element " << i;

    // Backward adds: twice into non-zero tables gives start + 2 * gradient.
    const auto dout = Random(n, 4);
    auto dwte = Random(wte.size(), 5), dwpe = Random(wpe.size(), 6);
    Vec ref_dwte = D(dwte), ref_dwpe = D(dwpe);
    for (int rep = 0; rep < 2; ++rep) {
      EmbeddingBackward(dout.data(), tokens.data(), dwte.data(), dwpe.data(), s.B, s.T, s.C);
      EmbeddingBackwardRef(D(dout), tokens, ref_dwte, ref_dwpe, s.B, s.T, s.C);
    }
    ExpectClose(dwte, ref_dwte, 1e-5, 1e-6, "dwte " + what);
    ExpectClose(dwpe, ref_dwpe, 1e-5, 1e-6, "dwpe " + what);
  }
}

TEST(TransformerKernels, EmbeddingBackwardReferenceMatchesFiniteDifferences) {
  const int64_t B = 2, T = 3, C = 2, V = 3;
  const auto tokens = RandomTokens(static_cast<size_t>(B * T), V, 7);
  const Vec wte = D(Random(static_cast<size_t>(V * C), 8)),
            wpe = D(Random(static_cast<size_t>(T * C), 9));
  const Vec g = D(Random(static_cast<size_t>(B * T * C), 10));  // loss = sum(out * g)
  Vec dwte(wte.size(), 0.0), dwpe(wpe.size(), 0.0);
  EmbeddingBackwardRef(g, tokens, dwte, dwpe, B, T, C);
  ExpectGradMatches(dwte,
                    NumericGrad(
                        [&](const Vec& e) {
                          Vec out;
                          EmbeddingForwardRef(tokens, e, wpe, out, B, T, C);
                          return Dot(out, g);
                        },
                        wte),
                    "dwte");
  ExpectGradMatches(dwpe,
                    NumericGrad(
                        [&](const Vec& p) {
                          Vec out;
                          EmbeddingForwardRef(tokens, wte, p, out, B, T, C);
                          return Dot(out, g);
                        },
                        wpe),
                    "dwpe");
}

// ---- LayerNorm ---------------------------------------------------------------

// Tolerance: 1e-5 relative + 1e-5 (fp32 means over C, then rstd up to ~10).
TEST(TransformerKernels, LayerNormForwardBackward) {
  const float eps = 1e-5f;
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{7, 37}, {1, 1}, {3, 768}, {5, 8}}) {
    const std::string what = "rows=" + std::to_string(rows) + " C=" + std::to_string(C);
    const auto n = static_cast<size_t>(rows * C);
    const auto x = Random(n, 11, -2, 3), w = Random(static_cast<size_t>(C), 12),
               b = Random(static_cast<size_t>(C), 13);
    std::vector<float> y(n), mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
    LayerNormForward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, C,
                     eps);
    const auto ref = LayerNormForwardRef(D(x), D(w), D(b), rows, C, eps);
    ExpectClose(y, ref.y, 1e-5, 1e-5, "y " + what);
    ExpectClose(mean, ref.mean, 1e-5, 1e-6, "mean " + what);
    ExpectClose(rstd, ref.rstd, 1e-5, 1e-5, "rstd " + what);

    // Backward adds into dx, dw and db: twice into non-zero buffers.
    const auto dy = Random(n, 14);
    auto dx = Random(n, 15), dw = Random(static_cast<size_t>(C), 16),
         db = Random(static_cast<size_t>(C), 17);
    Vec rdx = D(dx), rdw = D(dw), rdb = D(db);
    for (int rep = 0; rep < 2; ++rep) {
      LayerNormBackward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                        dw.data(), db.data(), rows, C);
      LayerNormBackwardRef(D(dy), D(x), D(w), ref.mean, ref.rstd, rdx, rdw, rdb, rows, C);
    }
    ExpectClose(dx, rdx, 1e-5, 2e-5, "dx " + what);
    ExpectClose(dw, rdw, 1e-5, 1e-5, "dw " + what);
    ExpectClose(db, rdb, 1e-5, 1e-5, "db " + what);
  }
}

TEST(TransformerKernels, LayerNormBackwardReferenceMatchesFiniteDifferences) {
  const int64_t rows = 3, C = 5;
  const double eps = 1e-5;
  const Vec x = D(Random(static_cast<size_t>(rows * C), 18, -2, 2));
  const Vec w = D(Random(static_cast<size_t>(C), 19)), b = D(Random(static_cast<size_t>(C), 20));
  const Vec g = D(Random(static_cast<size_t>(rows * C), 21));  // loss = sum(y * g)
  const auto fwd = LayerNormForwardRef(x, w, b, rows, C, eps);
  Vec dx(x.size(), 0.0), dw(w.size(), 0.0), db(b.size(), 0.0);
  LayerNormBackwardRef(g, x, w, fwd.mean, fwd.rstd, dx, dw, db, rows, C);
  ExpectGradMatches(
      dx,
      NumericGrad(
          [&](const Vec& v) { return Dot(LayerNormForwardRef(v, w, b, rows, C, eps).y, g); }, x),
      "dx");
  ExpectGradMatches(
      dw,
      NumericGrad(
          [&](const Vec& v) { return Dot(LayerNormForwardRef(x, v, b, rows, C, eps).y, g); }, w),
      "dw");
  ExpectGradMatches(
      db,
      NumericGrad(
          [&](const Vec& v) { return Dot(LayerNormForwardRef(x, w, v, rows, C, eps).y, g); }, b),
      "db");
}

// ---- Residual and GELU ---------------------------------------------------------

// Exact: one fp32 addition; out may alias either input.
TEST(TransformerKernels, ResidualAddInAndOutOfPlace) {
  const int64_t n = 1001;
  const auto a = Random(n, 22), b = Random(n, 23);
  std::vector<float> want(n), out(n);
  for (int64_t i = 0; i < n; ++i) want[i] = a[i] + b[i];
  ResidualAdd(a.data(), b.data(), out.data(), n);
  EXPECT_EQ(out, want);
  auto a2 = a, b2 = b;
  ResidualAdd(a2.data(), b.data(), a2.data(), n);
  EXPECT_EQ(a2, want);
  ResidualAdd(a.data(), b2.data(), b2.data(), n);
  EXPECT_EQ(b2, want);
}

// Tolerance: fp32 tanh against double: 1e-5 relative + 1e-6.
TEST(TransformerKernels, GeluForwardBackwardInAndOutOfPlace) {
  const int64_t n = 1003;
  const auto x = Random(n, 24, -6, 6), dy = Random(n, 25);
  Vec ref_y(n), ref_dx(n);
  for (int64_t i = 0; i < n; ++i) {
    ref_y[i] = GeluRef(x[i]);
    ref_dx[i] = dy[i] * GeluGradRef(x[i]);
  }
  std::vector<float> y(n), dx(n);
  GeluForward(x.data(), y.data(), n);
  ExpectClose(y, ref_y, 1e-5, 1e-6, "y");
  auto inplace = x;
  GeluForward(inplace.data(), inplace.data(), n);
  EXPECT_EQ(inplace, y);
  GeluBackward(x.data(), dy.data(), dx.data(), n);
  ExpectClose(dx, ref_dx, 1e-5, 1e-6, "dx");
  auto dx_inplace = dy;
  GeluBackward(x.data(), dx_inplace.data(), dx_inplace.data(), n);
  EXPECT_EQ(dx_inplace, dx);
}

TEST(TransformerKernels, GeluGradReferenceMatchesFiniteDifferences) {
  const Vec x = D(Random(64, 26, -5, 5));
  Vec grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) grad[i] = GeluGradRef(x[i]);
  ExpectGradMatches(grad,
                    NumericGrad(
                        [](const Vec& v) {
                          double s = 0;
                          for (double e : v) s += GeluRef(e);
                          return s;
                        },
                        x),
                    "gelu'");
}

// ---- Attention ----------------------------------------------------------------

struct AttShape {
  int64_t B, T, C, NH;
  std::string Name() const {
    return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
           " NH=" + std::to_string(NH);
  }
};
// T=1, NH=1, a head size of 5 (C=10), a T that is a multiple of the kernel's
// 64-position blocks and one that is not (130: three blocks, the last of 2).
const AttShape kAttShapes[] = {{2, 5, 12, 3},  {1, 1, 8, 1},    {3, 1, 6, 2}, {2, 7, 10, 2},
                               {1, 64, 16, 4}, {1, 130, 24, 2}, {2, 67, 8, 1}};

// Tolerance: out and att 1e-5 relative + 1e-6 (fp32 GEMMs over hs and T);
// dqkv 1e-4 relative + 1e-5 (two GEMMs in a row). att rows sum to 1 within
// 1e-5; above the diagonal att is exactly 0.
TEST(TransformerKernels, AttentionForwardMatchesReferenceAndIsCausal) {
  for (const AttShape& s : kAttShapes) {
    const auto qkv = Random(static_cast<size_t>(s.B * s.T * 3 * s.C), 27, -2, 2);
    std::vector<float> out(static_cast<size_t>(s.B * s.T * s.C));
    std::vector<float> att(static_cast<size_t>(s.B * s.NH * s.T * s.T),
                           std::nanf(""));  // all written
    AttentionForward(qkv.data(), out.data(), att.data(), s.B, s.T, s.C, s.NH);
    const auto ref = AttentionForwardRef(D(qkv), s.B, s.T, s.C, s.NH);
    ExpectClose(out, ref.out, 1e-5, 1e-6, "out " + s.Name());
    ExpectClose(att, ref.att, 1e-5, 1e-6, "att " + s.Name());
    for (int64_t row = 0; row < s.B * s.NH * s.T; ++row) {
      const int64_t t1 = row % s.T;
      double sum = 0;
      for (int64_t t2 = 0; t2 < s.T; ++t2) {
        const float a = att[static_cast<size_t>(row * s.T + t2)];
        if (t2 > t1) {
          ASSERT_EQ(a, 0.0f) << s.Name() << " row " << row << " t2 " << t2;
        }
        sum += a;
      }
      ASSERT_NEAR(sum, 1.0, 1e-5) << s.Name() << " row " << row;
    }
  }
}

TEST(TransformerKernels, AttentionBackwardMatchesReferenceAndOverwrites) {
  for (const AttShape& s : kAttShapes) {
    const auto qkv = Random(static_cast<size_t>(s.B * s.T * 3 * s.C), 28, -2, 2);
    const auto dout = Random(static_cast<size_t>(s.B * s.T * s.C), 29);
    std::vector<float> out(dout.size()), att(static_cast<size_t>(s.B * s.NH * s.T * s.T));
    AttentionForward(qkv.data(), out.data(), att.data(), s.B, s.T, s.C, s.NH);
    const auto fwd = AttentionForwardRef(D(qkv), s.B, s.T, s.C, s.NH);
    const Vec ref = AttentionBackwardRef(D(dout), D(qkv), fwd.att, s.B, s.T, s.C, s.NH);
    // dqkv is overwritten (NaN before; the same after a second call) and
    // the scratch needs no initialisation.
    std::vector<float> dqkv(qkv.size(), std::nanf("")),
        scratch(static_cast<size_t>(s.T * s.T), std::nanf(""));
    for (int rep = 0; rep < 2; ++rep) {
      AttentionBackward(dout.data(), qkv.data(), att.data(), dqkv.data(), scratch.data(), s.B, s.T,
                        s.C, s.NH);
      ExpectClose(dqkv, ref, 1e-4, 1e-5, "dqkv " + s.Name() + " call " + std::to_string(rep + 1));
    }
  }
}

TEST(TransformerKernels, AttentionBackwardReferenceMatchesFiniteDifferences) {
  for (const AttShape& s : {AttShape{2, 3, 4, 2}, AttShape{1, 4, 6, 1}}) {
    const Vec qkv = D(Random(static_cast<size_t>(s.B * s.T * 3 * s.C), 30, -2, 2));
    const Vec g = D(Random(static_cast<size_t>(s.B * s.T * s.C), 31));  // loss = sum(out * g)
    const auto fwd = AttentionForwardRef(qkv, s.B, s.T, s.C, s.NH);
    ExpectGradMatches(
        AttentionBackwardRef(g, qkv, fwd.att, s.B, s.T, s.C, s.NH),
        NumericGrad(
            [&](const Vec& v) { return Dot(AttentionForwardRef(v, s.B, s.T, s.C, s.NH).out, g); },
            qkv),
        "dqkv " + s.Name());
  }
}

// ---- Cross-entropy and sum of squares --------------------------------------------

// Tolerance: dlogits 1e-5 relative + 1e-8 (values down to 1e-9 / rows);
// the loss 1e-6 relative. Logits span [-30, 30], one row [-200, -100] (the
// softmax's exp of very negative numbers).
TEST(TransformerKernels, CrossEntropyFusedOutOfPlaceAliasedAndLossOnly) {
  for (auto [rows, V] : {std::pair<int64_t, int64_t>{5, 7}, {1, 1}, {3, 50257}, {9, 1000}}) {
    const std::string what = "rows=" + std::to_string(rows) + " V=" + std::to_string(V);
    auto logits = Random(static_cast<size_t>(rows * V), 32, -30, 30);
    if (rows > 1) {
      for (int64_t c = 0; c < V; ++c)
        logits[static_cast<size_t>(V + c)] = -150.0f + 50.0f * std::sin(c * 1.0f);
    }
    const auto targets = RandomTokens(static_cast<size_t>(rows), static_cast<int32_t>(V), 33);
    const auto ref = CrossEntropyRef(D(logits), targets, rows, V);
    const float scale = 1.0f / static_cast<float>(rows);

    float loss = -1;
    std::vector<float> dlogits(logits.size(), std::nanf(""));
    CrossEntropyFused(logits.data(), targets.data(), dlogits.data(), rows, V, scale, &loss);
    EXPECT_NEAR(loss, ref.loss, 1e-6 * std::abs(ref.loss) + 1e-7) << what;
    ExpectClose(dlogits, ref.dlogits, 1e-5, 1e-8, "dlogits " + what);

    float loss_only = -1;
    CrossEntropyFused(logits.data(), targets.data(), nullptr, rows, V, scale, &loss_only);
    EXPECT_EQ(loss_only, loss) << what;

    auto inplace = logits;
    float loss_inplace = -1;
    CrossEntropyFused(inplace.data(), targets.data(), inplace.data(), rows, V, scale,
                      &loss_inplace);
    EXPECT_EQ(loss_inplace, loss) << what;
    EXPECT_EQ(inplace, dlogits) << what;

    // grad_scale multiplies the gradient (here a loss scale of 1024 / rows).
    std::vector<float> scaled(logits.size());
    CrossEntropyFused(logits.data(), targets.data(), scaled.data(), rows, V, 1024.0f * scale,
                      &loss);
    Vec ref_scaled = ref.dlogits;
    for (auto& v : ref_scaled) v *= 1024.0;
    ExpectClose(scaled, ref_scaled, 1e-5, 1e-8 * 1024, "scaled dlogits " + what);
  }
}

TEST(TransformerKernels, CrossEntropyReferenceMatchesFiniteDifferences) {
  const int64_t rows = 3, V = 5;
  const Vec logits = D(Random(static_cast<size_t>(rows * V), 34, -3, 3));
  const auto targets = RandomTokens(static_cast<size_t>(rows), static_cast<int32_t>(V), 35);
  ExpectGradMatches(
      CrossEntropyRef(logits, targets, rows, V).dlogits,
      NumericGrad([&](const Vec& l) { return CrossEntropyRef(l, targets, rows, V).loss; }, logits),
      "dlogits");
}

// Tolerance: 1e-6 relative (double accumulation, one rounding to fp32).
TEST(TransformerKernels, SumSquares) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{100003}}) {
    const auto x = Random(static_cast<size_t>(n), 36, -3, 3);
    double ref = 0;
    for (float v : x) ref += static_cast<double>(v) * v;
    float got = -1;
    SumSquares(x.data(), n, &got);
    EXPECT_NEAR(got, ref, 1e-6 * ref) << "n=" << n;
  }
}

}  // namespace
}  // namespace cohort::kernels
