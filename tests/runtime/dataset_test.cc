#include "runtime/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

namespace cohort {
namespace {

std::string FreshDir(const std::string& name) {
  const std::string d = testing::TempDir() + "/cohort_ds_" + name;
  std::filesystem::remove_all(d);
  return d;
}

TEST(Synthetic, SamplesAreAPureFunctionOfTheirId) {
  SyntheticDataset d({3, 20, 5, 8}, 1000);
  std::vector<int64_t> a = {5, 17, 999}, b = {999, 5};
  std::vector<float> xa(3 * 20), xb(2 * 20);
  std::vector<int32_t> ya(3), yb(2);
  ASSERT_TRUE(d.Fill(a, xa.data(), ya.data()).ok());
  ASSERT_TRUE(d.Fill(b, xb.data(), yb.data()).ok());
  EXPECT_EQ(ya[2], yb[0]);
  EXPECT_EQ(ya[0], yb[1]);
  EXPECT_TRUE(std::equal(xa.begin() + 40, xa.end(), xb.begin()));
  EXPECT_FALSE(d.Fill(std::vector<int64_t>{1000}, xa.data(), ya.data()).ok());
}

TEST(Synthetic, LabelsUseEveryClass) {
  SyntheticDataset d({1, 784, 10, 64}, 4000);
  std::vector<int64_t> ids(4000);
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<float> x(4000 * 784);
  std::vector<int32_t> y(4000);
  ASSERT_TRUE(d.Fill(ids, x.data(), y.data()).ok());
  std::vector<int> count(10);
  for (int32_t l : y) ++count[static_cast<size_t>(l)];
  for (int c = 0; c < 10; ++c)
    EXPECT_GT(count[static_cast<size_t>(c)], 40) << "class " << c << " nearly unused";
}

TEST(Shards, RoundTripEqualsSyntheticData) {
  DataGenOptions o;
  o.out_dir = FreshDir("roundtrip");
  o.samples = 96;
  o.num_shards = 4;
  o.teacher = {9, 12, 3, 8};
  ASSERT_TRUE(GenerateShards(o, nullptr).ok());
  ASSERT_TRUE(VerifyShards(o.out_dir).ok());
  auto ds = ShardedDataset::Open(o.out_dir);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->num_shards(), 4);
  const int mine[] = {1, 3};
  ASSERT_TRUE((*ds)->Load(mine).ok());
  auto ids = (*ds)->LoadedSampleIds();
  ASSERT_EQ(ids.size(), 48u);
  EXPECT_EQ(ids.front(), 24);
  SyntheticDataset ref(o.teacher, o.samples);
  std::vector<float> x1(48 * 12), x2(48 * 12);
  std::vector<int32_t> y1(48), y2(48);
  ASSERT_TRUE((*ds)->Fill(ids, x1.data(), y1.data()).ok());
  ASSERT_TRUE(ref.Fill(ids, x2.data(), y2.data()).ok());
  EXPECT_EQ(x1, x2);
  EXPECT_EQ(y1, y2);
  // A sample from an unloaded shard is refused.
  EXPECT_FALSE((*ds)->Fill(std::vector<int64_t>{0}, x1.data(), y1.data()).ok());
}

class DamagedShard : public ::testing::Test {
 protected:
  void SetUp() override {
    o.out_dir = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    o.samples = 40;
    o.num_shards = 2;
    o.teacher = {1, 6, 3, 4};
    ASSERT_TRUE(GenerateShards(o, nullptr).ok());
    path = o.out_dir + "/" + ShardFileName(1, 2);
  }
  Status LoadAll() {
    auto ds = ShardedDataset::Open(o.out_dir);
    if (!ds.ok()) return ds.status();
    const int all[] = {0, 1};
    return (*ds)->Load(all);
  }
  DataGenOptions o;
  std::string path;
};

TEST_F(DamagedShard, Missing) {
  std::filesystem::remove(path);
  Status s = LoadAll();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("shard-00001-of-00002.cds"), std::string::npos) << s.message();
}

TEST_F(DamagedShard, Truncated) {
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
  Status s = LoadAll();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
}

TEST_F(DamagedShard, PayloadBitFlip) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(100);
  char c;
  f.read(&c, 1);
  c ^= 0x10;
  f.seekp(100);
  f.write(&c, 1);
  f.close();
  Status s = LoadAll();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("checksum mismatch"), std::string::npos) << s.message();
  EXPECT_FALSE(VerifyShards(o.out_dir).ok());
}

TEST_F(DamagedShard, HeaderBitFlip) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(20);
  f.put('\x7f');
  f.close();
  Status s = LoadAll();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("corrupted header"), std::string::npos) << s.message();
}

TEST(Shards, BadGenOptions) {
  DataGenOptions o;
  o.out_dir = FreshDir("badgen");
  o.samples = 10;
  o.num_shards = 3;
  EXPECT_FALSE(GenerateShards(o, nullptr).ok());
  EXPECT_EQ(ShardedDataset::Open(FreshDir("nothing")).status().code(), StatusCode::kNotFound);
}

TEST(Sampler, RanksSplitTheGlobalBatchExactly) {
  // 2 ranks x 4 == 1 rank x 8 for every step, and one epoch visits each sample once.
  const int64_t samples = 40;
  GlobalSampler one(samples, 8, 0, 1, 5), r0(samples, 4, 0, 2, 5), r1(samples, 4, 1, 2, 5);
  std::set<int64_t> seen;
  for (int64_t step = 0; step < 10; ++step) {
    std::vector<int64_t> a(8), b(4), c(4);
    one.Indices(step, a);
    r0.Indices(step, b);
    r1.Indices(step, c);
    b.insert(b.end(), c.begin(), c.end());
    EXPECT_EQ(a, b) << "step " << step;
    if (step < 5) seen.insert(a.begin(), a.end());
  }
  EXPECT_EQ(seen.size(), 40u);
}

TEST(Sampler, ShardWalkReadsOwnSamplesOncePerEpochInNewOrders) {
  std::vector<ShardWalkSampler::Shard> owned = {{1, 10, 4}, {5, 50, 4}, {6, 60, 4}};
  ShardWalkSampler s(owned, 3, /*member_id=*/2, /*seed=*/3);
  ASSERT_EQ(s.steps_per_epoch(), 4);
  std::multiset<int64_t> expect;
  for (const auto& sh : owned)
    for (int64_t i = 0; i < sh.samples; ++i) expect.insert(sh.first_sample + i);
  std::vector<std::vector<int64_t>> epochs(2);
  for (int64_t e = 0; e < 2; ++e) {
    for (int64_t step = 0; step < 4; ++step) {
      std::vector<int64_t> b(3);
      s.Indices(e * 4 + step, b);
      epochs[static_cast<size_t>(e)].insert(epochs[static_cast<size_t>(e)].end(), b.begin(),
                                            b.end());
    }
    EXPECT_EQ(std::multiset<int64_t>(epochs[static_cast<size_t>(e)].begin(),
                                     epochs[static_cast<size_t>(e)].end()),
              expect);
  }
  EXPECT_NE(epochs[0], epochs[1]) << "each epoch walks in a new order";
}

}  // namespace
}  // namespace cohort
