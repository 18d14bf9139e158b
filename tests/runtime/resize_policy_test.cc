// The elastic resize policy (runtime/resize_policy.h): the per-rank batch and
// learning rate after the world size changes, and the config's elastic section.
#include "runtime/resize_policy.h"

#include <gtest/gtest.h>

#include <string>

#include "runtime/config.h"

namespace cohort {
namespace {

TEST(ResizePolicy, DefaultKeepsPerRankBatchAndLr) {
  auto d = PlanResize(ElasticConfig{}, 32, 4, 3, 0.05);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->batch_per_rank, 32);
  EXPECT_EQ(d->global_batch, 96);
  EXPECT_DOUBLE_EQ(d->lr, 0.05);
  EXPECT_FALSE(d->rounded);
}

TEST(ResizePolicy, GlobalKeepsTheGlobalBatch) {
  ElasticConfig p{ElasticBatch::kGlobal, ElasticLr::kLinear};
  auto d = PlanResize(p, 24, 4, 3, 0.1);  // G0 = 96
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->batch_per_rank, 32);
  EXPECT_EQ(d->global_batch, 96);
  EXPECT_DOUBLE_EQ(d->lr, 0.1);  // G == G0: no change
  // 128 over 3 ranks rounds down: 42 per rank, 126 global, lr x 126/128.
  d = PlanResize(p, 32, 4, 3, 0.1);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->batch_per_rank, 42);
  EXPECT_EQ(d->global_batch, 126);
  EXPECT_TRUE(d->rounded);
  EXPECT_DOUBLE_EQ(d->lr, 0.1 * 126.0 / 128.0);
  // Growing past the global batch gives a rank no sample: an error.
  auto bad = PlanResize(p, 1, 2, 3, 0.1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gives no sample"), std::string::npos);
}

TEST(ResizePolicy, LinearAndSqrtScaleWithTheGlobalBatch) {
  auto lin = PlanResize({ElasticBatch::kPerRank, ElasticLr::kLinear}, 32, 4, 3, 0.08);
  ASSERT_TRUE(lin.ok());
  EXPECT_DOUBLE_EQ(lin->lr_scale, 0.75);
  EXPECT_DOUBLE_EQ(lin->lr, 0.06);
  auto sq = PlanResize({ElasticBatch::kPerRank, ElasticLr::kSqrt}, 32, 4, 1, 0.08);
  ASSERT_TRUE(sq.ok());
  EXPECT_DOUBLE_EQ(sq->lr_scale, 0.5);
  EXPECT_DOUBLE_EQ(sq->lr, 0.04);
  auto grow = PlanResize({ElasticBatch::kPerRank, ElasticLr::kSqrt}, 32, 2, 8, 0.01);
  ASSERT_TRUE(grow.ok());
  EXPECT_DOUBLE_EQ(grow->lr, 0.02);
}

const char* kBase = R"(
model: {layers: [4, 3, 2]}
optimizer: {type: sgd, lr: 0.1}
train: {steps: 5, batch_per_rank: 8}
)";

TEST(ResizePolicy, ConfigSectionIsStrict) {
  auto c = ParseConfig(std::string(kBase) + "elastic: {batch: global, lr: sqrt}\n", "e.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->elastic.batch, ElasticBatch::kGlobal);
  EXPECT_EQ(c->elastic.lr, ElasticLr::kSqrt);
  auto d = ParseConfig(kBase, "d.yaml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->elastic.batch, ElasticBatch::kPerRank);
  EXPECT_EQ(d->elastic.lr, ElasticLr::kKeep);
  EXPECT_NE(c->Hash(), d->Hash());
  auto bad = ParseConfig(std::string(kBase) + "elastic: {batch: global, lr: cubic}\n", "b.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'elastic.lr' must be keep, linear or sqrt"),
            std::string::npos)
      << bad.status().message();
  auto typo = ParseConfig(std::string(kBase) + "elastic: {batches: global}\n", "t.yaml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("unknown key"), std::string::npos)
      << typo.status().message();
}

}  // namespace
}  // namespace cohort
