#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "cohort/config.h"
#include "core/crc32c.h"
#include "core/dtype.h"
#include "core/file_util.h"
#include "core/status.h"
#include "core/tensor.h"

namespace cohort {
namespace {

TEST(Status, OkAndErrors) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "OK");
  Status e = NotFound("shard 3 missing");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.code(), StatusCode::kNotFound);
  EXPECT_EQ(e.ToString(), "NOT_FOUND: shard 3 missing");
  EXPECT_EQ(e.WithContext("loading data").message(), "loading data: shard 3 missing");
  EXPECT_TRUE(ok.WithContext("x").ok());
}

TEST(Status, DetailSurvivesContext) {
  EXPECT_EQ(Status().detail(), 0);
  EXPECT_EQ(NotFound("x").detail(), 0);
  Status d(StatusCode::kFailedPrecondition, "stale", 7);
  EXPECT_EQ(d.detail(), 7);
  Status c = d.WithContext("joining");
  EXPECT_EQ(c.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.detail(), 7);
  EXPECT_EQ(c.message(), "joining: stale");
}

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd");
  return x / 2;
}
Result<int> Quarter(int x) {
  COHORT_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(Result, ValueOrErrorAndMacros) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd");
}

TEST(Crc32c, KnownVectors) {
  // RFC 3720 (iSCSI) B.4 test vectors and the classic "123456789" check value.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32);
  for (int i = 0; i < 32; ++i) inc[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32c, HardwareMatchesPortableAndExtendComposes) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(4099);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 4099u}) {
    EXPECT_EQ(Crc32cExtend(0, buf.data(), n), Crc32cExtendPortable(0, buf.data(), n)) << n;
  }
  const uint32_t whole = Crc32c(buf.data(), buf.size());
  EXPECT_EQ(Crc32cExtend(Crc32c(buf.data(), 1000), buf.data() + 1000, buf.size() - 1000), whole);
}

TEST(DType, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(*ParseDType("bfloat16"), DType::kBF16);
  EXPECT_EQ(*ParseDType("F16"), DType::kF16);
  EXPECT_FALSE(ParseDType("float8").ok());
}

TEST(DType, Float16MatchesTheCompilerForEveryHalf) {
  // Every one of the 65536 halves decodes as the compiler's _Float16 does, and
  // re-encodes to itself (NaNs stay NaN).
  for (uint32_t b = 0; b < 65536; ++b) {
    _Float16 h;
    const uint16_t bits = static_cast<uint16_t>(b);
    std::memcpy(&h, &bits, 2);
    const float ref = static_cast<float>(h);
    const float got = F16ToFloat({bits});
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    ASSERT_EQ(got, ref) << std::hex << b;
    ASSERT_EQ(FloatToF16(got).bits, bits) << std::hex << b;
  }
}

TEST(DType, FloatToF16RoundsLikeTheCompiler) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> exp(-30, 17);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::ldexp(1.0f + static_cast<float>(rng() % 8388608) / 8388608.0f,
                               static_cast<int>(exp(rng))) *
                    ((rng() & 1) ? 1.0f : -1.0f);
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(FloatToF16(f).bits, ref_bits) << f;
  }
}

TEST(DType, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(BF16ToFloat(FloatToBF16(1.0f)), 1.0f);
  // 1 + 2^-8 is exactly half-way between bf16 neighbours 1 and 1+2^-7: ties to even (1).
  EXPECT_EQ(BF16ToFloat(FloatToBF16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(BF16ToFloat(FloatToBF16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::nanf("")))));
  EXPECT_EQ(BF16ToFloat(FloatToBF16(-3.5f)), -3.5f);
}

TEST(Tensor, ShapeViewsAndClone) {
  Tensor t = Tensor::Zeros({2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  for (int i = 0; i < 6; ++i) t.data<float>()[i] = static_cast<float>(i);
  auto row = t.View(3, {3});
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->data<float>()[0], 3.0f);
  row->data<float>()[0] = 42;  // a view shares storage
  EXPECT_EQ(t.data<float>()[3], 42.0f);
  Tensor c = t.Clone();
  c.data<float>()[3] = 0;
  EXPECT_EQ(t.data<float>()[3], 42.0f);
  EXPECT_FALSE(t.View(4, {3}).ok());  // past the end
  EXPECT_FALSE(t.Reshape({4}).ok());
  EXPECT_EQ(t.Reshape({3, 2})->dim(0), 3);
  EXPECT_FALSE(Tensor::Empty({-1}, DType::kF32).ok());
}

TEST(Tensor, CudaWithoutCudaIsAClearError) {
#if !COHORT_HAVE_CUDA
  auto t = Tensor::Empty({4}, DType::kF32, Device::kCuda);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("no CUDA"), std::string::npos);
#else
  GTEST_SKIP() << "CUDA build: device allocation is tested on a GPU";
#endif
}

TEST(FileUtil, AtomicWriteReplacesWholeFile) {
  const std::string dir = testing::TempDir() + "/cohort_file_util";
  ASSERT_TRUE(MakeDirs(dir).ok());
  const std::string path = dir + "/f.bin";
  ASSERT_TRUE(WriteFileAtomic(path, "first version").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  EXPECT_EQ(*ReadFile(path), "second");
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << "temp file left behind";
  }
  EXPECT_EQ(ReadFile(dir + "/nope").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace cohort
