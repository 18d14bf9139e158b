#include <gtest/gtest.h>

#include "runtime/grad_sync.h"
#include "runtime/mlp.h"

namespace cohort {
namespace {

TEST(GradBuckets, ReverseLayerOrderSmallFirstBucketContiguous) {
  Mlp m({784, 1024, 1024, 10}, kernels::Activation::kRelu);
  const auto ranges = m.LayerRanges();
  ASSERT_EQ(ranges.size(), 3u);
  const int64_t total = m.num_params() + 1;  // + the loss slot
  // 1 MiB first bucket holds only the classifier (41 KB); a 2 MiB cap cannot
  // fit layer 1 (4 MiB) with anything, and layer 0 (3 MiB) alone.
  auto b = PlanGradBuckets(ranges, total, 2 << 20, 1 << 20);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].first_layer, 2);
  EXPECT_EQ(b[0].offset + b[0].count, total) << "first bucket reaches the end (loss slot)";
  EXPECT_EQ(b[1].first_layer, 1);
  EXPECT_EQ(b[2].first_layer, 0);
  EXPECT_EQ(b[2].offset, 0);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_EQ(b[i].offset + b[i].count, b[i - 1].offset) << "contiguous";
  // 25 MiB: the first bucket stays small, the rest share one.
  b = PlanGradBuckets(ranges, total, 25 << 20, 1 << 20);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1].first_layer, 0);
  EXPECT_EQ(b[1].last_layer, 1);
  // Cap 0: a single bucket over everything.
  b = PlanGradBuckets(ranges, total, 0, 1 << 20);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].offset, 0);
  EXPECT_EQ(b[0].count, total);
}

}  // namespace
}  // namespace cohort
