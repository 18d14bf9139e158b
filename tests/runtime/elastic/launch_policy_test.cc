// The launcher's decisions (runtime/elastic/launch_policy.h), table-driven.
#include "runtime/elastic/launch_policy.h"

#include <gtest/gtest.h>

namespace cohort::elastic {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

TEST(DecideOnExitTest, Table) {
  struct Row {
    ExitFacts f;
    ExitAction want;
  };
  const Row rows[] = {
      // exited 0, finishing, stopping, failed, restarts, max
      {{true, false, false, false, 0, 0}, ExitAction::kFinished},
      {{true, true, false, false, 0, 0}, ExitAction::kFinished},  // a second finisher
      {{true, false, true, false, 0, 3}, ExitAction::kFinished},
      {{false, true, false, false, 0, 3}, ExitAction::kIgnore},  // killed after the job finished
      {{false, false, true, false, 0, 3}, ExitAction::kIgnore},  // the launcher stops on a signal
      {{false, false, false, true, 0, 3}, ExitAction::kIgnore},  // the job already failed
      {{false, false, false, false, 0, 3}, ExitAction::kRestart},
      {{false, false, false, false, 2, 3}, ExitAction::kRestart},
      {{false, false, false, false, 3, 3}, ExitAction::kNoRestartLeft},
      {{false, false, false, false, 0, 0}, ExitAction::kNoRestartLeft},
  };
  for (size_t i = 0; i < std::size(rows); ++i) {
    EXPECT_EQ(DecideOnExit(rows[i].f), rows[i].want) << "row " << i;
  }
}

TEST(DecideOnEvictionTest, Table) {
  const Clock::time_point t0{};
  const auto at = [&](int ms) { return t0 + milliseconds(ms); };
  struct Row {
    bool failed;
    std::optional<Clock::time_point> since;
    int now_ms;
    int hung_kill_ms;
    EvictionAction want;
  };
  const Row rows[] = {
      {false, std::nullopt, 100, 1000, EvictionAction::kNone},    // healthy
      {true, std::nullopt, 100, 1000, EvictionAction::kEvicted},  // newly evicted
      {true, at(0), 500, 1000, EvictionAction::kNone},            // evicted, within the grace
      {true, at(0), 1000, 1000, EvictionAction::kNone},           // exactly at it: not yet
      {true, at(0), 1001, 1000, EvictionAction::kKill},           // past it
      {true, at(0), 999999, 0, EvictionAction::kNone},            // 0: never kill
      {false, at(0), 5000, 1000, EvictionAction::kAnswersAgain},  // back before the kill
      {true, std::nullopt, 999999, 1, EvictionAction::kEvicted},  // first seen: no kill yet
  };
  for (size_t i = 0; i < std::size(rows); ++i) {
    EvictionFacts f;
    f.failed_in_registry = rows[i].failed;
    f.evicted_since = rows[i].since;
    f.now = at(rows[i].now_ms);
    f.hung_kill = milliseconds(rows[i].hung_kill_ms);
    EXPECT_EQ(DecideOnEviction(f), rows[i].want) << "row " << i;
  }
}

TEST(GiveUpReasonTest, Table) {
  struct Row {
    int here, elsewhere, min, restarts, max_restarts;
    bool give_up;
  };
  const Row rows[] = {
      {4, 0, 2, 0, 0, false}, {2, 0, 2, 0, 0, false}, {1, 0, 2, 0, 0, true},
      {1, 1, 2, 0, 0, false}, {1, 0, 2, 0, 1, false},  // a restart left
      {1, 0, 2, 1, 1, true},  {0, 0, 1, 5, 5, true},  {0, 3, 2, 5, 5, false},
  };
  for (size_t i = 0; i < std::size(rows); ++i) {
    const Row& r = rows[i];
    auto why = GiveUpReason(r.here, r.elsewhere, r.min, r.restarts, r.max_restarts);
    EXPECT_EQ(why.has_value(), r.give_up) << "row " << i;
  }
  auto why = GiveUpReason(1, 0, 2, 3, 3);
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(*why,
            "1 worker(s) alive in the job (1 here), fewer than --min 2, and no restart left "
            "(--max-restarts 3)");
}

}  // namespace
}  // namespace cohort::elastic
