// The agreement on the newest state (runtime/elastic/agreement.h): ranks as
// threads, each a Gloo communicator bootstrapped over one in-memory store,
// each holding a state of some step or none. Every rank must end with the
// newest state, byte for byte the copy of the lowest rank that holds it.
#include "runtime/elastic/agreement.h"

#include <gtest/gtest.h>

#include <ostream>
#include <thread>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/store.h"

namespace cohort::elastic {
namespace {

constexpr size_t kParams = 37;

// A state whose every value says which rank made it and at which step.
LoadedCheckpoint StateOf(int rank, int64_t step) {
  LoadedCheckpoint s;
  s.layout.step = step;
  s.layout.optimizer_steps = step * 2 + rank;
  s.params.assign(kParams, static_cast<float>(rank * 1000 + step));
  s.optim["m"].assign(kParams, static_cast<float>(-rank * 1000 - step));
  s.optim["v"].assign(kParams, 0.5f * static_cast<float>(rank));
  return s;
}

LoadedCheckpoint EmptyState() {
  LoadedCheckpoint s;
  s.params.assign(kParams, 0.0f);
  s.optim["m"].assign(kParams, 0.0f);
  s.optim["v"].assign(kParams, 0.0f);
  return s;
}

struct Outcome {
  Status status;
  std::optional<LoadedCheckpoint> state;
  int root = -2;
};

// Runs ShareNewestState on one thread per rank; held[r] < 0: rank r holds none.
std::vector<Outcome> Agree(const std::vector<int64_t>& held) {
  const int n = static_cast<int>(held.size());
  auto store = std::make_shared<InMemoryStore>();
  std::vector<Outcome> out(held.size());
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      GlooOptions o;
      o.timeout = std::chrono::seconds(20);
      auto comm = GlooCommunicator::Create(store, r, n, o);
      if (!comm.ok()) {
        out[r].status = comm.status();
        return;
      }
      std::optional<LoadedCheckpoint> mine;
      if (held[r] >= 0) mine = StateOf(r, held[r]);
      auto got = ShareNewestState(**comm, mine, EmptyState, &out[r].root);
      out[r].status = got.status();
      if (got.ok()) out[r].state = std::move(*got);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

struct Case {
  const char* name;
  std::vector<int64_t> held;
  int want_root;  // -1: nobody holds a state
  int64_t want_step;
};

// The case's name, so that test listings (ctest -N) are the same in every build.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class AgreementTest : public testing::TestWithParam<Case> {};

TEST_P(AgreementTest, EveryRankGetsTheNewestFromTheLowestHolder) {
  const Case& c = GetParam();
  const auto out = Agree(c.held);
  for (size_t r = 0; r < out.size(); ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    ASSERT_TRUE(out[r].status.ok()) << out[r].status.ToString();
    EXPECT_EQ(out[r].root, c.want_root);
    if (c.want_root < 0) {
      EXPECT_FALSE(out[r].state.has_value());
      continue;
    }
    ASSERT_TRUE(out[r].state.has_value());
    const LoadedCheckpoint want = StateOf(c.want_root, c.want_step);
    EXPECT_EQ(out[r].state->layout.step, want.layout.step);
    EXPECT_EQ(out[r].state->layout.optimizer_steps, want.layout.optimizer_steps);
    EXPECT_EQ(out[r].state->params, want.params);
    EXPECT_EQ(out[r].state->optim, want.optim);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AgreementTest,
    testing::Values(Case{"nobody", {-1, -1, -1}, -1, 0}, Case{"one_holder", {-1, 20, -1}, 1, 20},
                    Case{"newest_wins", {10, 30, 20}, 1, 30},
                    Case{"lowest_of_equal", {10, 30, 30}, 1, 30},
                    Case{"rank0_newest", {40, 30, -1, 40}, 0, 40},
                    Case{"last_rank_only", {-1, -1, -1, 5}, 3, 5},
                    Case{"step_zero_counts", {0, -1}, 0, 0}, Case{"single_rank", {7}, 0, 7}),
    [](const testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(NewestStepTest, IsTheMaximum) {
  auto store = std::make_shared<InMemoryStore>();
  std::vector<int64_t> got(3, -2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      auto comm = GlooCommunicator::Create(store, r, 3);
      ASSERT_TRUE(comm.ok());
      auto n = NewestStep(**comm, r == 1 ? 9 : r - 1);
      ASSERT_TRUE(n.ok());
      got[r] = *n;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(got, (std::vector<int64_t>{9, 9, 9}));
}

}  // namespace
}  // namespace cohort::elastic
