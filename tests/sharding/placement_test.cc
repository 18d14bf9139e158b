#include "sharding/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace cohort::sharding {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Placement> Make(const std::string& scheme, std::vector<Member> members,
                                uint64_t seed = 0) {
  PlacementOptions options;
  options.hash_seed = seed;
  Result<std::unique_ptr<Placement>> p = MakePlacement(scheme, std::move(members), options);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

std::vector<int32_t> AssignOrDie(const Placement& p, int64_t shards) {
  Result<std::vector<int32_t>> a = p.Assign(shards);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return std::move(a).value();
}

std::vector<Member> RandomMembers(std::mt19937_64& rng, int n) {
  std::vector<Member> ms;
  for (int i = 0; i < n; ++i) ms.push_back({rng(), 1.0});
  return ms;
}

std::vector<int64_t> Loads(const std::vector<int32_t>& owners, size_t members) {
  std::vector<int64_t> load(members, 0);
  for (int32_t o : owners) ++load[static_cast<size_t>(o)];
  return load;
}

double MaxOverMean(const std::vector<int32_t>& owners, size_t members) {
  const std::vector<int64_t> load = Loads(owners, members);
  const double mean = static_cast<double>(owners.size()) / static_cast<double>(members);
  return static_cast<double>(*std::max_element(load.begin(), load.end())) / mean;
}

class PlacementSchemeTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Schemes, PlacementSchemeTest,
                         ::testing::Values("ring", "bounded", "jump", "rendezvous"),
                         [](const auto& info) { return info.param; });

// ---- errors ----------------------------------------------------------------

TEST(MakePlacementTest, UnknownSchemeListsValidNames) {
  auto p = MakePlacement("maglev", MakeMembers(4));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("maglev"));
  EXPECT_THAT(p.status().message(), HasSubstr("ring, bounded, jump, rendezvous"));
}

TEST_P(PlacementSchemeTest, RejectsBadMembers) {
  auto empty = MakePlacement(GetParam(), {});
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(empty.status().message(), HasSubstr("no workers"));

  auto dup = MakePlacement(GetParam(), {{5, 1.0}, {6, 1.0}, {5, 1.0}});
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("duplicate member id 5"));

  for (double w : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity()}) {
    auto bad = MakePlacement(GetParam(), {{1, 1.0}, {2, w}});
    ASSERT_FALSE(bad.ok()) << w;
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(bad.status().message(), HasSubstr("member 2 has weight"));
  }
}

TEST_P(PlacementSchemeTest, RejectsMoreWorkersThanShards) {
  auto p = Make(GetParam(), MakeMembers(8));
  auto a = p->Assign(7);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("more workers (8) than shards (7)"));
  EXPECT_FALSE(p->Assign(0).ok());
  EXPECT_FALSE(p->Assign(-3).ok());
  EXPECT_FALSE(p->Assign(kMaxShards + 1).ok());
  EXPECT_TRUE(p->Assign(8).ok());
}

TEST(MakePlacementTest, RejectsBadOptions) {
  PlacementOptions o;
  o.vnodes_per_weight = 0;
  EXPECT_THAT(MakePlacement("ring", MakeMembers(2), o).status().message(), HasSubstr("vnodes"));
  o = {};
  o.epsilon = 0;
  EXPECT_THAT(MakePlacement("bounded", MakeMembers(2), o).status().message(), HasSubstr("epsilon"));
  o.epsilon = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(MakePlacement("bounded", MakeMembers(2), o).ok());
  o = {};
  o.vnodes_per_weight = 100000;
  EXPECT_THAT(MakePlacement("ring", MakeMembers(1000), o).status().message(), HasSubstr("points"));
}

TEST(MakePlacementTest, JumpRejectsUnequalWeights) {
  auto p = MakePlacement("jump", {{1, 1.0}, {2, 2.0}});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("cannot weight"));
  EXPECT_TRUE(MakePlacement("jump", {{1, 3.0}, {2, 3.0}}).ok());
}

// ---- basic contract ----------------------------------------------------------

TEST_P(PlacementSchemeTest, AssignCoversEveryShardOnceWithValidOwners) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 10; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 50);
    const int64_t shards = n + static_cast<int64_t>(rng() % 3000);
    auto p = Make(GetParam(), RandomMembers(rng, n), rng());
    const std::vector<int32_t> owners = AssignOrDie(*p, shards);
    ASSERT_EQ(owners.size(), static_cast<size_t>(shards));  // one owner per shard
    for (int32_t o : owners) {
      ASSERT_GE(o, 0);
      ASSERT_LT(o, n);
    }
  }
}

TEST_P(PlacementSchemeTest, KeyLookupAgreesWithAssign) {
  auto p = Make(GetParam(), MakeMembers(10), 3);
  EXPECT_EQ(p->scheme(), GetParam());
  EXPECT_EQ(p->has_key_lookup(), GetParam() != "bounded");
  if (!p->has_key_lookup()) return;
  const std::vector<int32_t> owners = AssignOrDie(*p, 500);
  for (int64_t s = 0; s < 500; ++s)
    EXPECT_EQ(p->Owner(static_cast<uint64_t>(s)), owners[static_cast<size_t>(s)]);
}

TEST_P(PlacementSchemeTest, SameInputsSameAnswer) {
  auto a = Make(GetParam(), MakeMembers(16), 9);
  auto b = Make(GetParam(), MakeMembers(16), 9);
  auto c = Make(GetParam(), MakeMembers(16), 10);
  EXPECT_EQ(AssignOrDie(*a, 2000), AssignOrDie(*b, 2000));
  EXPECT_NE(AssignOrDie(*a, 2000), AssignOrDie(*c, 2000));  // the seed matters
}

// ring, bounded and rendezvous do not depend on the order of the member list
// (jump does by design: its buckets are list positions).
TEST(PlacementTest, OwnerIdsDoNotDependOnMemberOrder) {
  for (const std::string scheme : {"ring", "bounded", "rendezvous"}) {
    std::mt19937_64 rng(5);
    std::vector<Member> ms = RandomMembers(rng, 20);
    std::vector<Member> shuffled = ms;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    const auto a = AssignOrDie(*Make(scheme, ms), 3000);
    const auto b = AssignOrDie(*Make(scheme, shuffled), 3000);
    EXPECT_EQ(CountMoved(ms, a, shuffled, b), 0) << scheme;
  }
}

// ---- movement ----------------------------------------------------------------

// Bounds on moved / ideal for one join or one leave, measured over 1000
// random memberships (4..64 members, random 64-bit ids, 10k shards) before
// being written down; the per-trial limits sit well above the worst case
// seen, the mean limits above the mean seen:
//   scheme      join: mean / worst   leave: mean / worst
//   ring        1.00 / 1.38          1.00 / 1.34
//   bounded     1.21 / 1.57          1.21 / 1.58   (eps = 0.05; cascades)
//   jump        1.00 / 1.27          1.89 / 2.27   (non-last leave: ~2x)
//   rendezvous  1.00 / 1.20          1.00 / 1.25
struct MovementBound {
  double join_trial, join_mean, leave_trial, leave_mean;
};
MovementBound BoundFor(const std::string& scheme) {
  if (scheme == "ring") return {1.75, 1.15, 1.75, 1.15};
  if (scheme == "bounded") return {2.0, 1.45, 2.0, 1.45};
  if (scheme == "jump") return {1.5, 1.10, 2.75, 2.3};
  return {1.5, 1.10, 1.5, 1.10};  // rendezvous
}

TEST_P(PlacementSchemeTest, SingleJoinOrLeaveMovesAboutTheIdeal) {
  const std::string scheme = GetParam();
  const MovementBound bound = BoundFor(scheme);
  constexpr int kTrials = 30;
  constexpr int64_t kShards = 10000;
  std::mt19937_64 rng(2024);
  double join_sum = 0, leave_sum = 0;
  for (int t = 0; t < kTrials; ++t) {
    const int n = 4 + static_cast<int>(rng() % 61);
    const std::vector<Member> ms = RandomMembers(rng, n);
    PlacementOptions o;
    o.hash_seed = rng();
    const auto before = AssignOrDie(*MakePlacement(scheme, ms, o).value(), kShards);

    std::vector<Member> joined = ms;
    joined.push_back({rng(), 1.0});
    const auto after_join = AssignOrDie(*MakePlacement(scheme, joined, o).value(), kShards);
    const double join_ratio = static_cast<double>(CountMoved(ms, before, joined, after_join)) /
                              kShards / IdealMovedFraction(n, 1, 0);
    EXPECT_LE(join_ratio, bound.join_trial) << "trial " << t << " n " << n;
    join_sum += join_ratio;

    const uint64_t leaver = ms[rng() % static_cast<size_t>(n)].id;
    const std::vector<Member> left = LeaveMembers(ms, {leaver});
    const auto after_leave = AssignOrDie(*MakePlacement(scheme, left, o).value(), kShards);
    const double leave_ratio = static_cast<double>(CountMoved(ms, before, left, after_leave)) /
                               kShards / IdealMovedFraction(n, 0, 1);
    EXPECT_LE(leave_ratio, bound.leave_trial) << "trial " << t << " n " << n;
    leave_sum += leave_ratio;

    // Shape of the movement, scheme by scheme.
    size_t joiner = joined.size() - 1;
    for (int64_t s = 0; s < kShards; ++s) {
      const auto i = static_cast<size_t>(s);
      const uint64_t was = ms[static_cast<size_t>(before[i])].id;
      const uint64_t now_join = joined[static_cast<size_t>(after_join[i])].id;
      const uint64_t now_leave = left[static_cast<size_t>(after_leave[i])].id;
      if (scheme == "ring" || scheme == "rendezvous" || scheme == "jump") {
        // A join only moves shards to the joiner.
        ASSERT_TRUE(now_join == was || now_join == joined[joiner].id) << s;
      }
      if (scheme == "ring" || scheme == "rendezvous") {
        // A leave only moves the leaver's shards.
        ASSERT_TRUE(now_leave == was || was == leaver) << s;
      }
      if (scheme == "jump") {
        // Only the leaver's bucket (now owned by the former last member) and
        // the last bucket's shards move.
        ASSERT_TRUE(now_leave == was || was == leaver || was == ms.back().id) << s;
      }
    }
  }
  EXPECT_LE(join_sum / kTrials, bound.join_mean);
  EXPECT_LE(leave_sum / kTrials, bound.leave_mean);
  if (scheme == "jump") {
    // Honest baseline: removing a member other than the last costs ~2x.
    EXPECT_GE(leave_sum / kTrials, 1.5);
  }
}

TEST(JumpPlacementTest, RemovingTheLastMemberMovesOnlyItsShards) {
  const std::vector<Member> ms = MakeMembers(40);
  const auto before = AssignOrDie(*Make("jump", ms), 20000);
  const std::vector<Member> left = LeaveMembers(ms, {39});
  const auto after = AssignOrDie(*Make("jump", left), 20000);
  const std::vector<int64_t> load = Loads(before, ms.size());
  EXPECT_EQ(CountMoved(ms, before, left, after), load[39]);
}

// ---- balance -----------------------------------------------------------------

// 64 workers, 100k shards. Limits from the issue, except jump: jump (like
// rendezvous) puts each shard independently and uniformly, so its loads have
// multinomial noise of sd sqrt(1562)/1562 = 2.5%, and the max of 64 loads is
// ~1.06 on average (1.04..1.085 over 20 seeds). 1.05 cannot hold for any
// per-key hash scheme; 1.10 is ~4 sd. Bounded is <= ceil(1.05 * mean) by
// construction. Ring with 160 vnodes measured 1.14..1.28 over 20 seeds.
TEST_P(PlacementSchemeTest, BalanceFor64WorkersAnd100kShards) {
  const std::string scheme = GetParam();
  const double limit = scheme == "ring" ? 1.35 : 1.10;
  for (uint64_t seed : {1, 2, 3}) {
    const auto owners = AssignOrDie(*Make(scheme, MakeMembers(64), seed), 100000);
    EXPECT_LE(MaxOverMean(owners, 64), limit) << "seed " << seed;
  }
}

TEST(BoundedPlacementTest, NoMemberAboveCapacity) {
  std::mt19937_64 rng(8);
  for (double eps : {0.01, 0.05, 0.3}) {
    for (int trial = 0; trial < 5; ++trial) {
      const int n = 2 + static_cast<int>(rng() % 100);
      const int64_t shards = n + static_cast<int64_t>(rng() % 20000);
      std::vector<Member> ms;
      double total = 0;
      for (int i = 0; i < n; ++i) {
        ms.push_back({rng(), 0.5 + static_cast<double>(rng() % 4)});
        total += ms.back().weight;
      }
      PlacementOptions o;
      o.epsilon = eps;
      const auto owners = AssignOrDie(*MakePlacement("bounded", ms, o).value(), shards);
      const std::vector<int64_t> load = Loads(owners, ms.size());
      for (size_t i = 0; i < ms.size(); ++i) {
        const double cap =
            std::ceil((1 + eps) * static_cast<double>(shards) * ms[i].weight / total);
        ASSERT_LE(static_cast<double>(load[i]), cap) << "eps " << eps << " member " << i;
      }
    }
  }
}

// Weighted schemes (all but jump, which rejects weights).
TEST(PlacementTest, WeightsScaleTheShare) {
  // Members 0..7 weight 1, member 8 weight 3: it should hold 3/11 of shards.
  std::vector<Member> ms = MakeMembers(9);
  ms[8].weight = 3.0;
  for (const std::string scheme : {"ring", "bounded", "rendezvous"}) {
    const auto owners = AssignOrDie(*Make(scheme, ms, 4), 60000);
    const double share = static_cast<double>(Loads(owners, 9)[8]) / 60000.0;
    EXPECT_NEAR(share, 3.0 / 11.0, 0.04) << scheme;
  }
}

// ---- helpers -----------------------------------------------------------------

TEST(LeaveMembersTest, FillsHolesFromTheTail) {
  const std::vector<Member> ms = MakeMembers(5);  // ids 0..4
  const std::vector<Member> left = LeaveMembers(ms, {1, 99});
  ASSERT_EQ(left.size(), 4u);
  EXPECT_EQ(left[0].id, 0u);
  EXPECT_EQ(left[1].id, 4u);  // the last moved into the hole
  EXPECT_EQ(left[2].id, 2u);
  EXPECT_EQ(left[3].id, 3u);
  EXPECT_EQ(LeaveMembers(ms, {4}).size(), 4u);
  EXPECT_EQ(LeaveMembers(ms, {4}).back().id, 3u);
}

TEST(IdealMovedFractionTest, Formula) {
  EXPECT_DOUBLE_EQ(IdealMovedFraction(8, 1, 0), 1.0 / 9.0);
  EXPECT_DOUBLE_EQ(IdealMovedFraction(8, 0, 1), 1.0 / 8.0);
  EXPECT_DOUBLE_EQ(IdealMovedFraction(8, 2, 0), 2.0 / 10.0);
  EXPECT_DOUBLE_EQ(IdealMovedFraction(8, 0, 0), 0.0);
  EXPECT_DOUBLE_EQ(IdealMovedFraction(8, 1, 1), 1.0 / 8.0);  // hand the leaver's shards over
}

}  // namespace
}  // namespace cohort::sharding
