#include "sharding/hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sharding/jump_hash.h"

namespace cohort::sharding {
namespace {

// Reference values: XXH64() of the xxHash library (v0.8.1), and the widely
// published XXH64("", 0) / ("a", 0) / ("abc", 0).
TEST(XxHash64Test, KnownVectors) {
  EXPECT_EQ(XxHash64("", 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(XxHash64("a", 0), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(XxHash64("abc", 0), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(XxHash64("abcd", 0), 0xDE0327B0D25D92CCULL);
  EXPECT_EQ(XxHash64("abcd", 1), 0xF5DCBD6DEE3C9553ULL);
  EXPECT_EQ(XxHash64("message digest", 0), 0x066ED728FCEEB3BEULL);
  EXPECT_EQ(XxHash64("message digest", 1), 0xCBA434B6417DD0FDULL);
  // >= 32 bytes: exercises the four-lane stripe loop.
  EXPECT_EQ(XxHash64("abcdefghijklmnopqrstuvwxyz", 0), 0xCFE1F278FA89835CULL);
  EXPECT_EQ(XxHash64("The quick brown fox jumps over the lazy dog", 0), 0x0B242D361FDA71BCULL);
  EXPECT_EQ(XxHash64("The quick brown fox jumps over the lazy dog", 1), 0xDF5091B6DAD2C6DBULL);
  EXPECT_EQ(XxHash64("1234567890123456789012345678901234567890"
                     "1234567890123456789012345678901234567890",
                     0),
            0xE04A477F19EE145DULL);
  EXPECT_EQ(XxHash64("1234567890123456789012345678901234567890"
                     "1234567890123456789012345678901234567890",
                     1),
            0x0B795E8B945F7051ULL);
}

TEST(XxHash64Test, BytesAndStringViewAgree) {
  const std::string s = "cohort";
  EXPECT_EQ(XxHash64Bytes(s.data(), s.size(), 7), XxHash64(s, 7));
  EXPECT_EQ(XxHash64Bytes(nullptr, 0, 0), 0xEF46DB3751D8E999ULL);
}

TEST(XxHash64Test, WordAndPairMatchByteHash) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t a = rng(), b = rng(), seed = rng();
    unsigned char bytes[16];
    for (int k = 0; k < 8; ++k) {
      bytes[k] = static_cast<unsigned char>(a >> (8 * k));
      bytes[8 + k] = static_cast<unsigned char>(b >> (8 * k));
    }
    ASSERT_EQ(XxHash64Word(a, seed), XxHash64Bytes(bytes, 8, seed));
    ASSERT_EQ(XxHash64Pair(a, b, seed), XxHash64Bytes(bytes, 16, seed));
  }
}

TEST(XxHash64Test, UnalignedInputGivesSameHash) {
  std::vector<unsigned char> buf(300);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 131 + 7);
  for (size_t len : {0, 1, 3, 4, 7, 8, 31, 32, 33, 64, 100, 255}) {
    std::vector<unsigned char> copy(buf.begin() + 1, buf.begin() + 1 + static_cast<long>(len));
    EXPECT_EQ(XxHash64Bytes(buf.data() + 1, len, 3), XxHash64Bytes(copy.data(), len, 3)) << len;
  }
}

// splitmix64 seeded with 0: its well-known first two outputs.
TEST(SplitMix64Test, KnownOutputs) {
  EXPECT_EQ(SplitMix64(0), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(SplitMix64(0x9E3779B97F4A7C15ULL), 0x6E789E6AA1B965F4ULL);
  static_assert(SplitMix64(0) == 0xE220A8397B1DCDAFULL);
}

TEST(HashToUnitOpenTest, NeverZeroOrOne) {
  EXPECT_GT(HashToUnitOpen(0), 0.0);
  EXPECT_LT(HashToUnitOpen(~uint64_t{0}), 1.0);
}

// Values from ClickHouse's jumpConsistentHash tests (same algorithm).
TEST(JumpConsistentHashTest, KnownValues) {
  EXPECT_EQ(JumpConsistentHash(1, 1), 0);
  EXPECT_EQ(JumpConsistentHash(42, 57), 43);
  EXPECT_EQ(JumpConsistentHash(256, 1024), 520);
  EXPECT_EQ(JumpConsistentHash(3735883980ULL, 1), 0);
  EXPECT_EQ(JumpConsistentHash(3735883980ULL, 666), 361);
  EXPECT_EQ(JumpConsistentHash(16045690984833335023ULL, 255), 237);
}

// Growing from n to n+1 buckets moves a key only into the new bucket.
TEST(JumpConsistentHashTest, KeysOnlyMoveToTheNewBucket) {
  std::mt19937_64 rng(2);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t key = rng();
    int32_t prev = 0;
    for (int32_t n = 1; n <= 64; ++n) {
      const int32_t b = JumpConsistentHash(key, n);
      ASSERT_TRUE(b == prev || b == n - 1) << "key " << key << " n " << n;
      prev = b;
    }
  }
}

}  // namespace
}  // namespace cohort::sharding
