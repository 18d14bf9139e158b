// The job controller's decisions (coordinator/controller/job_decision.h) as
// tables: which epoch comes next for a given job, breakers and config, and
// which member is evicted after a round of probes.
#include "coordinator/controller/job_decision.h"

#include <gtest/gtest.h>

namespace cohort::coordinator {
namespace {

using health::BreakerState;
constexpr BreakerState kClosed = BreakerState::kClosed;
constexpr BreakerState kOpen = BreakerState::kOpen;
constexpr BreakerState kHalfOpen = BreakerState::kHalfOpen;
using Kind = EpochDecision::Kind;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

constexpr MemberState kJoining = MemberState::kJoining;
constexpr MemberState kActive = MemberState::kActive;
constexpr MemberState kFailed = MemberState::kFailed;
constexpr MemberState kLeft = MemberState::kLeft;

// A member as one row sees it: its state in the registry and its breaker as
// the controller tracks it (untracked: not probed yet).
struct M {
  std::string id;
  MemberState state = kActive;
  BreakerState breaker = BreakerState::kClosed;
  int ok_probes = 1;
  bool tracked = true;
};

struct Row {
  const char* name;
  uint64_t epoch;
  std::vector<std::string> ranks;
  std::vector<M> members;
  int min, max;
  Ms since_config;  // time since the controller first read the config
  std::optional<bool> reform;
  bool done;
  Kind want;
  std::vector<std::string> want_members;  // kCommit only
};

EpochDecision Decide(const Row& row) {
  const Clock::time_point t0{};
  JobView job;
  job.epoch = row.epoch;
  job.ranks = row.ranks;
  job.done = row.done;
  job.reform_requested = row.reform;
  job.config_seen = t0;
  BreakerStates breakers;
  for (const M& m : row.members) {
    job.states[m.id] = m.state;
    if (m.tracked) breakers[m.id] = MemberHealth{m.breaker, m.ok_probes};
  }
  JobConfig cfg;
  cfg.min = row.min;
  cfg.max = row.max;
  cfg.join_grace = Ms(1000);
  return DecideNextEpoch(job, breakers, cfg, t0 + row.since_config);
}

const Ms kEarly{10};   // within the join grace
const Ms kLate{5000};  // past the join grace
const auto kNo = std::optional<bool>();

TEST(DecideNextEpoch, Table) {
  const M a{"a"}, b{"b"}, c{"c"}, d{"d"};
  const M a_new{"a", kJoining}, b_new{"b", kJoining}, c_new{"c", kJoining};
  // One row per line reads as a table:
  // name, epoch, ranks, members, min, max, time since the config, reform asked, done, want,
  // members.
  // clang-format off
  const Row rows[] = {
      // First epoch.
      {"first: max joined",                      0, {},              {a_new, b_new},                           1, 2, kEarly, kNo,   false, Kind::kCommit,     {"a", "b"}},
      {"first: below max waits for the grace",   0, {},              {a_new},                                  1, 2, kEarly, kNo,   false, Kind::kWait,       {}},
      {"first: grace over, min reached",         0, {},              {a_new},                                  1, 2, kLate,  kNo,   false, Kind::kCommit,     {"a"}},
      {"first: below min even after the grace",  0, {},              {a_new},                                  2, 3, kLate,  kNo,   false, Kind::kWait,       {}},
      {"first: nobody",                          0, {},              {},                                       1, 2, kLate,  kNo,   false, Kind::kWait,       {}},
      {"first: not probed yet",                  0, {},              {{"a", kJoining, kClosed, 0}},            1, 1, kLate,  kNo,   false, Kind::kWait,       {}},
      {"first: untracked",                       0, {},              {{"a", kJoining, kClosed, 1, false}},     1, 1, kLate,  kNo,   false, Kind::kWait,       {}},
      {"first: newcomers in id order up to max", 0, {},              {c_new, a_new, b_new},                    1, 2, kEarly, kNo,   false, Kind::kCommit,     {"a", "b"}},
      // Steady state.
      {"nothing changes: read the reform key",   3, {"a", "b"},      {a, b},                                   1, 2, kLate,  kNo,   false, Kind::kReadReform, {}},
      {"nothing changes, no reform asked",       3, {"a", "b"},      {a, b},                                   1, 2, kLate,  false, false, Kind::kWait,       {}},
      {"reform requested: same members again",   3, {"a", "b"},      {a, b},                                   1, 2, kLate,  true,  false, Kind::kCommit,     {"a", "b"}},
      {"a member died (failed)",                 3, {"a", "b", "c"}, {a, {"b", kFailed}, c},                   1, 3, kLate,  kNo,   false, Kind::kCommit,     {"a", "c"}},
      {"a member left",                          3, {"a", "b", "c"}, {a, {"b", kLeft}, c},                     1, 3, kLate,  kNo,   false, Kind::kCommit,     {"a", "c"}},
      {"breaker open",                           3, {"a", "b", "c"}, {a, {"b", kActive, kOpen}, c},            1, 3, kLate,  kNo,   false, Kind::kCommit,     {"a", "c"}},
      {"breaker half-open",                      3, {"a", "b"},      {{"a", kActive, kHalfOpen}, b},           1, 2, kLate,  kNo,   false, Kind::kCommit,     {"b"}},
      {"survivors keep rank order",              3, {"c", "a", "b"}, {a, {"b", kFailed}, c},                   1, 3, kLate,  kNo,   false, Kind::kCommit,     {"c", "a"}},
      {"below min after a death",                3, {"a", "b"},      {a, {"b", kFailed}},                      2, 2, kLate,  kNo,   false, Kind::kWait,       {}},
      {"grow up to max",                         3, {"a"},           {a, b_new, c_new},                        1, 2, kLate,  kNo,   false, Kind::kCommit,     {"a", "b"}},
      {"grow: newcomer after survivors",         3, {"b"},           {a_new, b},                               1, 3, kLate,  kNo,   false, Kind::kCommit,     {"b", "a"}},
      {"at max: newcomer waits",                 3, {"a", "b"},      {a, b, c_new},                            1, 2, kLate,  kNo,   false, Kind::kReadReform, {}},
      {"rejoined with open breaker waits",       3, {"a"},           {a, {"b", kJoining, kOpen}},              1, 2, kLate,  kNo,   false, Kind::kReadReform, {}},
      {"replacement joins after a death",        3, {"a", "b"},      {a, {"b", kFailed}, c_new},               2, 2, kLate,  kNo,   false, Kind::kCommit,     {"a", "c"}},
      {"steady growth ignores the grace",        3, {"a"},           {a, b_new},                               1, 3, kEarly, kNo,   false, Kind::kCommit,     {"a", "b"}},
      // A job run again: no member of the epoch is live (a fresh start).
      {"run again: waits for max in the grace",  5, {"a", "b"},      {{"a", kFailed}, {"b", kFailed}, c_new},  1, 2, kEarly, kNo,   false, Kind::kWait,       {}},
      {"run again: grace over",                  5, {"a", "b"},      {{"a", kFailed}, {"b", kFailed}, c_new},  1, 2, kLate,  kNo,   false, Kind::kCommit,     {"c"}},
      {"run again: max reached",                 5, {"a"},           {{"a", kLeft}, c_new, d},                 1, 2, kEarly, kNo,   false, Kind::kCommit,     {"c", "d"}},
      // Done.
      {"done job",                               3, {"a"},           {a, b_new},                               1, 2, kLate,  kNo,   true,  Kind::kWait,       {}},
      {"done job, first epoch",                  0, {},              {a_new},                                  1, 1, kLate,  kNo,   true,  Kind::kWait,       {}},
  };
  // clang-format on
  for (const Row& row : rows) {
    const EpochDecision got = Decide(row);
    EXPECT_EQ(static_cast<int>(got.kind), static_cast<int>(row.want)) << row.name;
    if (row.want == Kind::kCommit) {
      EXPECT_EQ(got.members, row.want_members) << row.name;
    }
  }
}

TEST(ShouldEvict, Table) {
  struct EvictRow {
    MemberState state;
    BreakerState before, now;
    bool want;
  };
  const EvictRow rows[] = {
      {kActive, kClosed, kOpen, true},     // an epoch's member whose breaker opened
      {kActive, kOpen, kOpen, true},       // still open: marked again (its mark may have failed)
      {kActive, kHalfOpen, kOpen, true},   // re-opened after a failed trial probe
      {kJoining, kClosed, kOpen, true},    // a newcomer whose breaker just opened
      {kJoining, kHalfOpen, kOpen, true},  //
      {kJoining, kOpen, kOpen, false},     // joined again with the breaker still open: waits
      {kActive, kClosed, kClosed, false},  // healthy
      {kActive, kOpen, kHalfOpen, false},  // cooling down
      {kFailed, kClosed, kOpen, false},    // already failed
      {kLeft, kClosed, kOpen, false},      // gone
  };
  for (const EvictRow& r : rows) {
    EXPECT_EQ(ShouldEvict(r.state, r.before, r.now), r.want)
        << MemberStateName(r.state) << " " << health::BreakerStateName(r.before) << " -> "
        << health::BreakerStateName(r.now);
  }
}

}  // namespace
}  // namespace cohort::coordinator
