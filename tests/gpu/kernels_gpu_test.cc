// Each CUDA kernel (kernels/cuda) against its CPU twin (kernels/cpu), which
// tests/kernels/kernels_test.cc checks against plain loops. Inputs are seeded;
// every element is compared with the tolerance stated at each test. Labelled
// `gpu` in ctest; without a CUDA device every test skips with the reason.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/transformer.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/transformer.h"
#include "tests/gpu/gpu_test_util.h"

namespace cohort::kernels {
namespace {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(1, n) * sizeof(T)),
              cudaSuccess);
  }
  explicit DeviceBuffer(const std::vector<T>& h) : DeviceBuffer(h.size()) { Upload(h); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void Upload(const std::vector<T>& h) {
    ASSERT_EQ(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> Download() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  size_t n_;
};

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// |gpu - cpu| <= atol + rtol * |cpu| for every element; stops at the first miss.
void ExpectClose(const std::vector<float>& gpu, const std::vector<float>& cpu, double rtol,
                 double atol, const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (size_t i = 0; i < gpu.size(); ++i)
    ASSERT_NEAR(gpu[i], cpu[i], atol + rtol * std::abs(cpu[i])) << what << ", element " << i;
}

void ExpectNoCudaError() {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const Status s = cuda::LastError();
  EXPECT_TRUE(s.ok()) << s.ToString();
}

std::vector<uint16_t> ToHalf(DType t, const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  CastFromFloat(x.data(), t, h.data(), static_cast<int64_t>(x.size()), 1.0f);
  return h;
}
std::vector<float> FromHalf(DType t, const std::vector<uint16_t>& h) {
  std::vector<float> x(h.size());
  CastToFloat(t, h.data(), x.data(), static_cast<int64_t>(h.size()), 1.0f);
  return x;
}

// Tolerance: fp32 sums of k products in another order, k = 129: 1e-4 relative.
TEST(CudaKernels, GemmFp32AllTransposes) {
  SKIP_WITHOUT_GPU();
  const int64_t m = 67, n = 45, k = 129;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
      auto a = Random(static_cast<size_t>(m * k), 1), b = Random(static_cast<size_t>(k * n), 2);
      auto c = Random(static_cast<size_t>(m * n), 3);
      DeviceBuffer<float> da(a), db(b), dc(c);
      cuda::Gemm(ta, tb, m, n, k, 0.5f, da.get(), lda, db.get(), ldb, 0.25f, dc.get(), ldc);
      Gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, c.data(), ldc);
      ExpectClose(dc.Download(), c, 1e-4, 1e-4,
                  "ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
    }
  ExpectNoCudaError();
}

// Tolerance: the same 16-bit inputs, fp32 accumulation in another order:
// 1e-3 for an fp32 C; one ulp of the type more for a 16-bit C (a sum near a
// rounding boundary may round the other way).
TEST(CudaKernels, GemmMixedBf16Fp16) {
  SKIP_WITHOUT_GPU();
  const int64_t m = 64, n = 72, k = 257;
  for (DType t : {DType::kBF16, DType::kF16})
    for (DType ct : {DType::kF32, t})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
          auto a = ToHalf(t, Random(static_cast<size_t>(m * k), 4)),
               b = ToHalf(t, Random(static_cast<size_t>(k * n), 5));
          auto c = Random(static_cast<size_t>(m * n), 6);
          DeviceBuffer<uint16_t> da(a), db(b);
          const std::string what = std::string(DTypeName(t)) + " C=" + std::string(DTypeName(ct)) +
                                   " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb);
          if (ct == DType::kF32) {
            DeviceBuffer<float> dc(c);
            cuda::GemmMixed(ta, tb, m, n, k, 1.0f, t, da.get(), lda, db.get(), ldb, 0.5f, ct,
                            dc.get(), ldc);
            GemmMixed(ta, tb, m, n, k, 1.0f, t, a.data(), lda, b.data(), ldb, 0.5f, ct, c.data(),
                      ldc);
            ExpectClose(dc.Download(), c, 1e-3, 1e-3, what);
          } else {
            auto c16 = ToHalf(t, c);
            DeviceBuffer<uint16_t> dc(c16);
            cuda::GemmMixed(ta, tb, m, n, k, 1.0f, t, da.get(), lda, db.get(), ldb, 0.5f, ct,
                            dc.get(), ldc);
            GemmMixed(ta, tb, m, n, k, 1.0f, t, a.data(), lda, b.data(), ldb, 0.5f, ct, c16.data(),
                      ldc);
            const double ulp = t == DType::kBF16 ? 1.0 / 128 : 1.0 / 1024;
            ExpectClose(FromHalf(t, dc.Download()), FromHalf(t, c16), ulp, 1e-3, what);
          }
        }
  ExpectNoCudaError();
}

// Tolerance: tanhf and the CPU's tanh differ by a few ulp: 1e-5 relative + 1e-6.
TEST(CudaKernels, BiasActForwardActForwardActBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 37, cols = 1029;
  const auto n = static_cast<size_t>(rows * cols);
  auto x = Random(n, 7, -4, 4), bias = Random(static_cast<size_t>(cols), 8), dy = Random(n, 9);
  DeviceBuffer<float> dx(x), dbias(bias), ddy(dy), dout(n);
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kGelu}) {
    const std::string what = "act " + std::to_string(static_cast<int>(act));
    std::vector<float> y(n);
    cuda::BiasActForward(dx.get(), dbias.get(), dout.get(), rows, cols, act);
    BiasActForward(x.data(), bias.data(), y.data(), rows, cols, act);
    ExpectClose(dout.Download(), y, 1e-5, 1e-6, "BiasActForward " + what);
    cuda::ActForward(dx.get(), dout.get(), static_cast<int64_t>(n), act);
    ActForward(x.data(), y.data(), static_cast<int64_t>(n), act);
    ExpectClose(dout.Download(), y, 1e-5, 1e-6, "ActForward " + what);
    cuda::ActBackward(dx.get(), ddy.get(), dout.get(), static_cast<int64_t>(n), act);
    ActBackward(x.data(), dy.data(), y.data(), static_cast<int64_t>(n), act);
    ExpectClose(dout.Download(), y, 1e-5, 1e-6, "ActBackward " + what);
  }
  ExpectNoCudaError();
}

// Tolerance: column sums of 300 values in another order: 1e-5 relative + 1e-5.
TEST(CudaKernels, BiasGrad) {
  SKIP_WITHOUT_GPU();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 77}, {1, 5}, {1024, 4096}}) {
    auto dz = Random(static_cast<size_t>(rows * cols), 10);
    DeviceBuffer<float> ddz(dz), ddb(std::vector<float>(static_cast<size_t>(cols), 42.0f));
    std::vector<float> db(static_cast<size_t>(cols));
    cuda::BiasGrad(ddz.get(), ddb.get(), rows, cols);
    BiasGrad(dz.data(), db.data(), rows, cols);
    ExpectClose(ddb.Download(), db, 1e-5, 1e-5 * std::sqrt(static_cast<double>(rows)),
                "rows " + std::to_string(rows));
  }
  ExpectNoCudaError();
}

// Tolerance: probabilities 1e-5 relative + 1e-7; the loss (fp32 and atomics
// across rows on the GPU, double on the CPU) 1e-4 relative.
TEST(CudaKernels, SoftmaxCrossEntropyForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{33, 1000}, {7, 10}, {1024, 4096}}) {
    auto logits = Random(static_cast<size_t>(rows * cols), 11, -20, 20);
    std::vector<int32_t> labels(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>((r * 7919) % cols);
    DeviceBuffer<float> dl(logits), dp(logits.size()), dloss(1);
    DeviceBuffer<int32_t> dlab(labels);
    std::vector<float> probs(logits.size());
    const double ref =
        SoftmaxCrossEntropyForward(logits.data(), labels.data(), probs.data(), rows, cols);
    const double got = cuda::SoftmaxCrossEntropyForward(dl.get(), dlab.get(), dp.get(), rows, cols);
    EXPECT_NEAR(got, ref, 1e-4 * std::abs(ref)) << rows << "x" << cols;
    ExpectClose(dp.Download(), probs, 1e-5, 1e-7, "probs");
    cuda::SoftmaxCrossEntropyForward(dl.get(), dlab.get(), dp.get(), rows, cols, dloss.get());
    EXPECT_NEAR(dloss.Download()[0], ref, 1e-4 * std::abs(ref)) << "loss to device memory";
    std::vector<float> grad(logits.size());
    DeviceBuffer<float> dg(logits.size());
    cuda::SoftmaxCrossEntropyBackward(dp.get(), dlab.get(), dg.get(), rows, cols,
                                      1.0f / static_cast<float>(rows));
    SoftmaxCrossEntropyBackward(probs.data(), labels.data(), grad.data(), rows, cols,
                                1.0f / static_cast<float>(rows));
    ExpectClose(dg.Download(), grad, 1e-5, 1e-7, "dlogits");
  }
  ExpectNoCudaError();
}

// Sizes that cross the multi-tensor table's limits: more tensors than one
// launch holds (64), a tensor of more chunks than one launch holds
// (2048 x 32768), lengths that are not multiples of 4, and tensors that start
// off a 16-byte boundary (the scalar path).
struct TensorSet {
  std::vector<int64_t> sizes;
  std::vector<int64_t> offsets;  // into one allocation per list, some misaligned
  int64_t total = 0;
  explicit TensorSet(std::vector<int64_t> s) : sizes(std::move(s)) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      total += i % 3 == 1 ? 1 : 0;  // every third tensor starts 4 bytes off alignment
      offsets.push_back(total);
      total += (sizes[i] + 3) / 4 * 4;
    }
  }
  static TensorSet Standard(bool huge) {
    std::vector<int64_t> s = {1, 5, 4096, 32768, 32769, 100003};
    for (int i = 0; i < 70; ++i) s.push_back(17 + 64 * i);
    if (huge) s.push_back(int64_t{2048} * 32768 + 4099);
    return TensorSet(std::move(s));
  }
};

// Tolerance: the GPU fuses multiply-adds (FMA), the CPU build does not:
// 1e-5 relative + 1e-6 after 3 steps.
TEST(CudaKernels, MultiTensorAdamWAndSingle) {
  SKIP_WITHOUT_GPU();
  const TensorSet ts = TensorSet::Standard(/*huge=*/true);
  const auto total = static_cast<size_t>(ts.total);
  auto p = Random(total, 12), m = std::vector<float>(total, 0.0f),
       v = std::vector<float>(total, 0.0f);
  DeviceBuffer<float> dp(p), dg(total), dm(m), dv(v);
  const AdamWOptions o{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f};
  for (int step = 1; step <= 3; ++step) {
    auto g = Random(total, 100 + static_cast<uint32_t>(step));
    dg.Upload(g);
    std::vector<AdamWTensor> host, dev;
    for (size_t i = 0; i < ts.sizes.size(); ++i) {
      const int64_t off = ts.offsets[i], n = ts.sizes[i];
      host.push_back({p.data() + off, g.data() + off, m.data() + off, v.data() + off, n});
      dev.push_back({dp.get() + off, dg.get() + off, dm.get() + off, dv.get() + off, n});
    }
    MultiTensorAdamWUpdate(host.data(), static_cast<int>(host.size()), o, step);
    if (step == 2) {  // the single-tensor entry point, one tensor at a time
      for (const auto& t : dev) cuda::AdamWUpdate(t.param, t.grad, t.m, t.v, t.n, o, step);
    } else {
      cuda::MultiTensorAdamWUpdate(dev.data(), static_cast<int>(dev.size()), o, step);
    }
  }
  // Padding between tensors must be untouched: compare the whole allocation.
  ExpectClose(dp.Download(), p, 1e-5, 1e-6, "param");
  ExpectClose(dm.Download(), m, 1e-5, 1e-6, "m");
  ExpectClose(dv.Download(), v, 1e-5, 1e-6, "v");
  ExpectNoCudaError();
}

TEST(CudaKernels, MultiTensorSgdMomentumNesterovAndPlain) {
  SKIP_WITHOUT_GPU();
  const TensorSet ts = TensorSet::Standard(/*huge=*/false);
  const auto total = static_cast<size_t>(ts.total);
  for (SgdOptions o : {SgdOptions{0.1f, 0.9f, 0.01f, false}, SgdOptions{0.1f, 0.9f, 0.01f, true},
                       SgdOptions{0.1f, 0.0f, 0.01f, false}}) {
    auto p = Random(total, 13), buf = std::vector<float>(total, 0.0f);
    DeviceBuffer<float> dp(p), dg(total), dbuf(buf);
    for (int step = 0; step < 3; ++step) {
      auto g = Random(total, 200 + static_cast<uint32_t>(step));
      dg.Upload(g);
      std::vector<SgdTensor> host, dev;
      for (size_t i = 0; i < ts.sizes.size(); ++i) {
        const int64_t off = ts.offsets[i], n = ts.sizes[i];
        host.push_back({p.data() + off, g.data() + off, buf.data() + off, n});
        dev.push_back(
            {dp.get() + off, dg.get() + off, o.momentum == 0 ? nullptr : dbuf.get() + off, n});
      }
      MultiTensorSgdMomentumUpdate(host.data(), static_cast<int>(host.size()), o, step == 0);
      if (step == 1) {
        for (const auto& t : dev)
          cuda::SgdMomentumUpdate(t.param, t.grad, t.momentum_buf, t.n, o, false);
      } else {
        cuda::MultiTensorSgdMomentumUpdate(dev.data(), static_cast<int>(dev.size()), o, step == 0);
      }
    }
    ExpectClose(dp.Download(), p, 1e-5, 1e-6,
                "nesterov=" + std::to_string(o.nesterov) + " mu=" + std::to_string(o.momentum));
  }
  ExpectNoCudaError();
}

// Exact: a copy.
TEST(CudaKernels, PackUnpack) {
  SKIP_WITHOUT_GPU();
  const TensorSet ts = TensorSet::Standard(/*huge=*/false);
  const auto total = static_cast<size_t>(ts.total);
  auto src = Random(total, 14);
  DeviceBuffer<float> dsrc(src), ddst(std::vector<float>(total, -7.0f));
  int64_t flat_n = 0;
  for (auto n : ts.sizes) flat_n += n;
  for (int64_t flat_off : {0, 1}) {  // a flat buffer on and off a 16-byte boundary
    DeviceBuffer<float> dflat(static_cast<size_t>(flat_n + flat_off));
    std::vector<const float*> srcs, dsrcs;
    std::vector<float*> ddsts;
    for (size_t i = 0; i < ts.sizes.size(); ++i) {
      srcs.push_back(src.data() + ts.offsets[i]);
      dsrcs.push_back(dsrc.get() + ts.offsets[i]);
      ddsts.push_back(ddst.get() + ts.offsets[i]);
    }
    std::vector<float> flat(static_cast<size_t>(flat_n));
    Pack(srcs.data(), ts.sizes.data(), static_cast<int>(ts.sizes.size()), flat.data());
    cuda::Pack(dsrcs.data(), ts.sizes.data(), static_cast<int>(ts.sizes.size()),
               dflat.get() + flat_off);
    auto got = dflat.Download();
    got.erase(got.begin(), got.begin() + flat_off);
    EXPECT_EQ(got, flat) << "flat offset " << flat_off;
    cuda::Unpack(dflat.get() + flat_off, ddsts.data(), ts.sizes.data(),
                 static_cast<int>(ts.sizes.size()));
    auto back = ddst.Download();
    for (size_t i = 0; i < ts.sizes.size(); ++i)
      for (int64_t j = 0; j < ts.sizes[i]; ++j)
        ASSERT_EQ(back[ts.offsets[i] + j], src[ts.offsets[i] + j])
            << "tensor " << i << " element " << j;
  }
  ExpectNoCudaError();
}

// Exact (bit for bit) except NaN payloads: both round to nearest even.
TEST(CudaKernels, CastsWithScale) {
  SKIP_WITHOUT_GPU();
  auto x = Random(100003, 15, -80000, 80000);
  const float specials[] = {0.0f,        -0.0f,        INFINITY,
                            -INFINITY,   1e-30f,       65520.0f,
                            65519.0f,    6e-8f,        1.00390625f /* bf16 tie */,
                            1.01171875f, std::nanf("")};
  std::memcpy(x.data() + 1, specials, sizeof(specials));  // x.data()+1: the unaligned path too
  for (DType t : {DType::kBF16, DType::kF16})
    for (int64_t off : {0, 1}) {
      const int64_t n = static_cast<int64_t>(x.size()) - off;
      DeviceBuffer<float> dx(x), dback(x.size());
      DeviceBuffer<uint16_t> dh(x.size());
      std::vector<uint16_t> h(x.size(), 0);
      CastFromFloat(x.data() + off, t, h.data(), n, 0.5f);
      cuda::CastFromFloat(dx.get() + off, t, dh.get(), n, 0.5f);
      const auto gh = dh.Download();
      for (int64_t i = 0; i < n; ++i) {
        const bool nan = std::isnan(x[static_cast<size_t>(i + off)]);
        if (nan) {
          ASSERT_TRUE(std::isnan(FromHalf(t, {gh[i]})[0])) << i;
        } else {
          ASSERT_EQ(gh[i], h[i]) << DTypeName(t) << " element " << i << " x=" << x[i + off];
        }
      }
      std::vector<float> back(x.size(), 0.0f);
      CastToFloat(t, h.data(), back.data(), n, 4.0f);
      dh.Upload(h);
      cuda::CastToFloat(t, dh.get(), dback.get() + off, n, 4.0f);
      const auto gb = dback.Download();
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(back[i])) {
          ASSERT_TRUE(std::isnan(gb[i + off])) << i;
        } else {
          ASSERT_EQ(gb[i + off], back[i]) << DTypeName(t) << " element " << i;
        }
      }
    }
  ExpectNoCudaError();
}

// Exact: one multiplication per element.
TEST(CudaKernels, ScaleAndScaleCheckFinite) {
  SKIP_WITHOUT_GPU();
  auto y = Random(100001, 16);
  DeviceBuffer<float> dy(y);
  DeviceBuffer<int32_t> dflag(std::vector<int32_t>{0});
  cuda::ScaleCheckFinite(dy.get(), 100001, 0.125f, dflag.get());
  int32_t flag = 0;
  ScaleCheckFinite(y.data(), 100001, 0.125f, &flag);
  EXPECT_EQ(dy.Download(), y);
  EXPECT_EQ(dflag.Download()[0], 0);
  for (size_t bad_at : {size_t{0}, size_t{50000}, size_t{100000}}) {
    for (float bad : {INFINITY, std::nanf("")}) {
      auto z = y;
      z[bad_at] = bad;
      DeviceBuffer<float> dz(z);
      dflag.Upload({0});
      cuda::ScaleCheckFinite(dz.get() + 1, 100000, 2.0f, dflag.get());  // unaligned start
      EXPECT_EQ(dflag.Download()[0], bad_at == 0 ? 0 : 1) << bad_at;
    }
  }
  cuda::Scale(dy.get(), 100001, 3.0f);
  Scale(y.data(), 100001, 3.0f);
  EXPECT_EQ(dy.Download(), y);
  ExpectNoCudaError();
}

TEST(CudaKernels, StreamSettingIsPerThreadAndUsed) {
  SKIP_WITHOUT_GPU();
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  cuda::SetStream(s);
  EXPECT_EQ(cuda::Stream(), s);
  auto y = Random(1 << 20, 17);
  DeviceBuffer<float> dy(y);
  cuda::Scale(dy.get(), 1 << 20, 2.0f);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  Scale(y.data(), 1 << 20, 2.0f);
  EXPECT_EQ(dy.Download(), y);
  cuda::SetStream(nullptr);
  cudaStreamDestroy(s);
  ExpectNoCudaError();
}

// ---- The GPT-2 kernels (kernels/cuda/transformer.h) -----------------------------

std::vector<int32_t> RandomTokens(size_t n, int32_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, V - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Tolerance: forward exact (one fp32 addition); backward 1e-5 relative + 1e-5
// (tokens repeat: atomics add them in another order).
TEST(CudaTransformer, EmbeddingForwardBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 4, T = 33, C = 67, V = 50;
  const auto n = static_cast<size_t>(B * T * C);
  const auto tokens = RandomTokens(static_cast<size_t>(B * T), V, 40);
  auto wte = Random(static_cast<size_t>(V * C), 41), wpe = Random(static_cast<size_t>(T * C), 42);
  DeviceBuffer<int32_t> dtok(tokens);
  DeviceBuffer<float> dwte(wte), dwpe(wpe), dout(n);
  std::vector<float> out(n);
  cuda::EmbeddingForward(dtok.get(), dwte.get(), dwpe.get(), dout.get(), B, T, C);
  EmbeddingForward(tokens.data(), wte.data(), wpe.data(), out.data(), B, T, C);
  EXPECT_EQ(dout.Download(), out);
  // Backward adds: twice into the (non-zero) tables.
  const auto g = Random(n, 43);
  DeviceBuffer<float> dg(g);
  for (int rep = 0; rep < 2; ++rep) {
    cuda::EmbeddingBackward(dg.get(), dtok.get(), dwte.get(), dwpe.get(), B, T, C);
    EmbeddingBackward(g.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  }
  ExpectClose(dwte.Download(), wte, 1e-5, 1e-5, "dwte");
  ExpectClose(dwpe.Download(), wpe, 1e-5, 1e-5, "dwpe");
  ExpectNoCudaError();
}

// Tolerance: y, mean, rstd 1e-5 relative + 1e-5 (sums over C in another
// order); dx 1e-5 + 2e-5; dw, db (sums over rows) 1e-5 + 1e-5 sqrt(rows).
TEST(CudaTransformer, LayerNormForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{67, 771}, {1, 1}, {2048, 768}}) {
    const std::string what = "rows=" + std::to_string(rows) + " C=" + std::to_string(C);
    const auto n = static_cast<size_t>(rows * C);
    const auto x = Random(n, 44, -2, 3), w = Random(static_cast<size_t>(C), 45),
               b = Random(static_cast<size_t>(C), 46), dy = Random(n, 47);
    DeviceBuffer<float> dx_in(x), dw_in(w), db_in(b), ddy(dy), dy_out(n),
        dmean(static_cast<size_t>(rows)), drstd(static_cast<size_t>(rows));
    std::vector<float> y(n), mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
    cuda::LayerNormForward(dx_in.get(), dw_in.get(), db_in.get(), dy_out.get(), dmean.get(),
                           drstd.get(), rows, C, 1e-5f);
    LayerNormForward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, C,
                     1e-5f);
    ExpectClose(dy_out.Download(), y, 1e-5, 1e-5, "y " + what);
    ExpectClose(dmean.Download(), mean, 1e-5, 1e-5, "mean " + what);
    ExpectClose(drstd.Download(), rstd, 1e-5, 1e-5, "rstd " + what);
    // Backward adds into dx, dw, db: twice into non-zero buffers.
    auto gx = Random(n, 48), gw = Random(static_cast<size_t>(C), 49),
         gb = Random(static_cast<size_t>(C), 50);
    DeviceBuffer<float> dgx(gx), dgw(gw), dgb(gb);
    for (int rep = 0; rep < 2; ++rep) {
      cuda::LayerNormBackward(ddy.get(), dx_in.get(), dw_in.get(), dmean.get(), drstd.get(),
                              dgx.get(), dgw.get(), dgb.get(), rows, C);
      LayerNormBackward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), gx.data(),
                        gw.data(), gb.data(), rows, C);
    }
    const double sum_tol = 1e-5 * std::sqrt(static_cast<double>(rows));
    ExpectClose(dgx.Download(), gx, 1e-5, 2e-5, "dx " + what);
    ExpectClose(dgw.Download(), gw, 1e-5, sum_tol, "dw " + what);
    ExpectClose(dgb.Download(), gb, 1e-5, sum_tol, "db " + what);
  }
  ExpectNoCudaError();
}

// Tolerance: residual exact; GELU as ActForward (tanhf against tanh: 1e-5
// relative + 1e-6).
TEST(CudaTransformer, ResidualAddAndGelu) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 100003;
  const auto a = Random(static_cast<size_t>(n), 51, -6, 6), b = Random(static_cast<size_t>(n), 52);
  DeviceBuffer<float> da(a), db(b), dout(static_cast<size_t>(n));
  std::vector<float> out(static_cast<size_t>(n));
  cuda::ResidualAdd(da.get(), db.get(), dout.get(), n);
  ResidualAdd(a.data(), b.data(), out.data(), n);
  EXPECT_EQ(dout.Download(), out);
  cuda::ResidualAdd(da.get(), db.get(), db.get(), n);  // out aliases b
  EXPECT_EQ(db.Download(), out);
  cuda::GeluForward(da.get(), dout.get(), n);
  GeluForward(a.data(), out.data(), n);
  ExpectClose(dout.Download(), out, 1e-5, 1e-6, "GeluForward");
  const auto dy = Random(static_cast<size_t>(n), 53);
  DeviceBuffer<float> ddy(dy);
  std::vector<float> dx(static_cast<size_t>(n));
  cuda::GeluBackward(da.get(), ddy.get(), ddy.get(), n);  // dx aliases dy
  GeluBackward(a.data(), dy.data(), dx.data(), n);
  ExpectClose(ddy.Download(), dx, 1e-5, 1e-6, "GeluBackward");
  ExpectNoCudaError();
}

// Tolerance: att and out 1e-4 relative + 1e-6 (expf against the CPU's
// polynomial exp, GEMM sums in another order); dqkv 1e-4 relative + 1e-5.
// att must be exactly 0 above the diagonal; dqkv is overwritten (NaN before,
// the same after a second call).
TEST(CudaTransformer, AttentionForwardBackward) {
  SKIP_WITHOUT_GPU();
  struct Shape {
    int64_t B, T, C, NH;
  };
  for (Shape s :
       {Shape{2, 5, 12, 3}, Shape{1, 1, 8, 1}, Shape{3, 130, 40, 4}, Shape{8, 256, 384, 6}}) {
    const std::string what = "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
                             " C=" + std::to_string(s.C) + " NH=" + std::to_string(s.NH);
    const auto qkv = Random(static_cast<size_t>(s.B * s.T * 3 * s.C), 54, -2, 2);
    const auto g = Random(static_cast<size_t>(s.B * s.T * s.C), 55);
    const auto att_n = static_cast<size_t>(s.B * s.NH * s.T * s.T);
    std::vector<float> out(g.size()), att(att_n), dqkv(qkv.size()),
        scratch(static_cast<size_t>(s.T * s.T));
    AttentionForward(qkv.data(), out.data(), att.data(), s.B, s.T, s.C, s.NH);
    AttentionBackward(g.data(), qkv.data(), att.data(), dqkv.data(), scratch.data(), s.B, s.T, s.C,
                      s.NH);

    DeviceBuffer<float> dqkv_in(qkv), dg(g), dout(g.size()),
        datt(std::vector<float>(att_n, std::nanf(""))),
        dgrad(std::vector<float>(qkv.size(), std::nanf(""))), dscratch(scratch.size());
    cuda::AttentionForward(dqkv_in.get(), dout.get(), datt.get(), s.B, s.T, s.C, s.NH);
    const auto gatt = datt.Download();
    ExpectClose(gatt, att, 1e-4, 1e-6, "att " + what);
    ExpectClose(dout.Download(), out, 1e-4, 1e-6, "out " + what);
    for (size_t i = 0; i < att_n; ++i) {
      const auto t1 = static_cast<int64_t>(i / static_cast<size_t>(s.T)) % s.T;
      const auto t2 = static_cast<int64_t>(i % static_cast<size_t>(s.T));
      if (t2 > t1) {
        ASSERT_EQ(gatt[i], 0.0f) << what << " element " << i;
      }
    }
    for (int rep = 0; rep < 2; ++rep) {
      cuda::AttentionBackward(dg.get(), dqkv_in.get(), datt.get(), dgrad.get(), dscratch.get(), s.B,
                              s.T, s.C, s.NH);
      ExpectClose(dgrad.Download(), dqkv, 1e-4, 1e-5,
                  "dqkv " + what + " call " + std::to_string(rep + 1));
    }
  }
  ExpectNoCudaError();
}

// Tolerance: the loss 1e-5 relative; dlogits 1e-5 relative + 1e-8 (expf
// against the CPU's polynomial exp). With dlogits aliasing logits and null.
TEST(CudaTransformer, CrossEntropyFused) {
  SKIP_WITHOUT_GPU();
  for (auto [rows, V] : {std::pair<int64_t, int64_t>{64, 50257}, {7, 10}, {1, 1}}) {
    const std::string what = "rows=" + std::to_string(rows) + " V=" + std::to_string(V);
    const auto logits = Random(static_cast<size_t>(rows * V), 56, -30, 30);
    const auto targets = RandomTokens(static_cast<size_t>(rows), static_cast<int32_t>(V), 57);
    const float scale = 1.0f / static_cast<float>(rows);
    std::vector<float> dlogits(logits.size());
    float loss = 0;
    CrossEntropyFused(logits.data(), targets.data(), dlogits.data(), rows, V, scale, &loss);
    DeviceBuffer<float> dl(logits), dd(std::vector<float>(logits.size(), std::nanf(""))), dloss(1);
    DeviceBuffer<int32_t> dt(targets);
    cuda::CrossEntropyFused(dl.get(), dt.get(), dd.get(), rows, V, scale, dloss.get());
    EXPECT_NEAR(dloss.Download()[0], loss, 1e-5 * std::abs(loss) + 1e-7) << what;
    ExpectClose(dd.Download(), dlogits, 1e-5, 1e-8, "dlogits " + what);
    cuda::CrossEntropyFused(dl.get(), dt.get(), nullptr, rows, V, scale, dloss.get());
    EXPECT_NEAR(dloss.Download()[0], loss, 1e-5 * std::abs(loss) + 1e-7) << "loss only " << what;
    cuda::CrossEntropyFused(dl.get(), dt.get(), dl.get(), rows, V, scale, dloss.get());
    EXPECT_NEAR(dloss.Download()[0], loss, 1e-5 * std::abs(loss) + 1e-7) << "aliased " << what;
    ExpectClose(dl.Download(), dlogits, 1e-5, 1e-8, "aliased dlogits " + what);
  }
  ExpectNoCudaError();
}

// Tolerance: 1e-6 relative (double sums in another order, one fp32 rounding).
TEST(CudaTransformer, SumSquares) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{100003}, int64_t{1} << 24}) {
    const auto x = Random(static_cast<size_t>(n), 58, -3, 3);
    float ref = 0;
    SumSquares(x.data(), n, &ref);
    DeviceBuffer<float> dx(x), dout(1);
    cuda::SumSquares(dx.get(), n, dout.get());
    EXPECT_NEAR(dout.Download()[0], ref, 1e-6 * ref) << "n=" << n;
  }
  ExpectNoCudaError();
}

}  // namespace
}  // namespace cohort::kernels
