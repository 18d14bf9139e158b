// The WGL linearizability checker on hand-made histories, and a few seeds of
// the whole simulator.

#include "coordinator/sim/linearizability.h"

#include <gtest/gtest.h>

#include "coordinator/sim/simulator.h"

namespace cohort::coordinator {
namespace {

KvOp Op(KvOp::Kind k, uint64_t client, int64_t call, int64_t ret, std::string value = "",
        std::optional<std::string> out = std::nullopt, bool ok = true) {
  KvOp o;
  o.kind = k;
  o.client = client;
  o.call = call;
  o.ret = ret;
  o.completed = ret >= 0;
  o.key = "k";
  o.value = std::move(value);
  o.out = std::move(out);
  o.ok = ok;
  return o;
}
constexpr auto kGet = KvOp::Kind::kGet;
constexpr auto kPut = KvOp::Kind::kPut;
constexpr auto kCas = KvOp::Kind::kCas;

TEST(Linearizability, SequentialHistory) {
  std::vector<KvOp> h = {Op(kPut, 1, 1, 2, "a"), Op(kGet, 2, 3, 4, "", "a"),
                         Op(kPut, 1, 5, 6, "b", "a"), Op(kGet, 2, 7, 8, "", "b")};
  EXPECT_TRUE(CheckKvLinearizable(h).linearizable);
}

TEST(Linearizability, StaleReadAfterCompletedWriteFails) {
  std::vector<KvOp> h = {Op(kPut, 1, 1, 2, "a"), Op(kPut, 1, 3, 4, "b", "a"),
                         Op(kGet, 2, 5, 6, "", "a")};
  LinearizabilityResult r = CheckKvLinearizable(h);
  EXPECT_FALSE(r.linearizable);
  EXPECT_EQ(r.failing_key, "k");
}

TEST(Linearizability, ConcurrentOpsMayReorder) {
  // The read overlaps the write: either order is fine.
  std::vector<KvOp> h = {Op(kPut, 1, 1, 2, "a"), Op(kPut, 1, 3, 8, "b", "a"),
                         Op(kGet, 2, 4, 5, "", "b"), Op(kGet, 3, 6, 7, "", "b")};
  EXPECT_TRUE(CheckKvLinearizable(h).linearizable);
  // ...but two reads may not see b then a.
  std::vector<KvOp> bad = {Op(kPut, 1, 1, 2, "a"), Op(kPut, 1, 3, 10, "b", "a"),
                           Op(kGet, 2, 4, 5, "", "b"), Op(kGet, 3, 6, 7, "", "a")};
  EXPECT_FALSE(CheckKvLinearizable(bad).linearizable);
}

TEST(Linearizability, PendingWriteMayOrMayNotTakeEffect) {
  std::vector<KvOp> took = {Op(kPut, 1, 1, 2, "a"), Op(kPut, 2, 3, -1, "b"),
                            Op(kGet, 3, 4, 5, "", "b")};
  EXPECT_TRUE(CheckKvLinearizable(took).linearizable);
  std::vector<KvOp> lost = {Op(kPut, 1, 1, 2, "a"), Op(kPut, 2, 3, -1, "b"),
                            Op(kGet, 3, 4, 5, "", "a")};
  EXPECT_TRUE(CheckKvLinearizable(lost).linearizable);
  // Not before it was called.
  std::vector<KvOp> early = {Op(kPut, 1, 1, 2, "a"), Op(kGet, 3, 3, 4, "", "b"),
                             Op(kPut, 2, 5, -1, "b")};
  EXPECT_FALSE(CheckKvLinearizable(early).linearizable);
}

TEST(Linearizability, CasOutcomeMustMatchState) {
  KvOp cas = Op(kCas, 2, 3, 4, "c", std::string("a"), true);
  cas.expected = "a";
  std::vector<KvOp> ok = {Op(kPut, 1, 1, 2, "a"), cas, Op(kGet, 1, 5, 6, "", "c")};
  EXPECT_TRUE(CheckKvLinearizable(ok).linearizable);
  KvOp wrong = cas;
  wrong.ok = false;  // claims failure although the value matched
  std::vector<KvOp> bad = {Op(kPut, 1, 1, 2, "a"), wrong};
  EXPECT_FALSE(CheckKvLinearizable(bad).linearizable);
}

TEST(Linearizability, KeysAreIndependent) {
  KvOp other = Op(kPut, 1, 1, 2, "z");
  other.key = "other";
  std::vector<KvOp> h = {other, Op(kGet, 2, 3, 4, "", std::nullopt)};
  EXPECT_TRUE(CheckKvLinearizable(h).linearizable);
}

TEST(Simulator, SeedsPassAndAreDeterministic) {
  for (int nodes : {3, 5}) {
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      SimOptions o;
      o.seed = seed;
      o.nodes = nodes;
      o.steps = 600;
      SimResult a = RunSimulation(o);
      ASSERT_TRUE(a.ok) << a.failure;
      SimResult b = RunSimulation(o);
      EXPECT_EQ(a.stats.commits, b.stats.commits);
      EXPECT_EQ(a.stats.messages, b.stats.messages);
      EXPECT_EQ(a.stats.faults, b.stats.faults);
      EXPECT_GT(a.stats.commits, 0u);
    }
  }
}

}  // namespace
}  // namespace cohort::coordinator
