#pragma once
// The job controller's decisions as pure functions of what it fetched (the
// job, the members' breakers, the config, the time), so that they are tested
// with tables (tests/coordinator/job_decision_test.cc) and the controller
// (coordinator/controller/job_controller.cc) only fetches, decides and acts.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/controller/job_config.h"
#include "coordinator/health/failure_detector.h"
#include "coordinator/kv/job_types.h"

namespace cohort::coordinator {

// The job as the controller read it this round.
struct JobView {
  uint64_t epoch = 0;
  std::vector<std::string> ranks;             // the current epoch's members, in rank order
  std::map<std::string, MemberState> states;  // every member (after this round's evictions)
  bool done = false;                          // DoneKey is set
  // Whether a worker asked to re-form the current epoch (ReformKey). nullopt:
  // not read; it is read only when the decision needs it (kReadReform).
  std::optional<bool> reform_requested;
  std::chrono::steady_clock::time_point
      config_seen{};  // when this controller first read the config
};

// One tracked member's health: what admission into an epoch needs.
struct MemberHealth {
  health::BreakerState breaker = health::BreakerState::kClosed;
  int ok_probes = 0;  // successful probes since tracked (admission needs one)
};
using BreakerStates = std::map<std::string, MemberHealth>;  // tracked members, by id

struct EpochDecision {
  enum class Kind {
    kWait,        // nothing to commit now
    kReadReform,  // the members would not change: read ReformKey into the view, decide again
    kCommit,      // commit epoch + 1 with `members`
  };
  Kind kind = Kind::kWait;
  std::vector<std::string> members;  // kCommit: rank order
};

// The next epoch: healthy survivors in their rank order, then healthy
// newcomers in id order, up to `max`. A member is healthy when it is live
// (joining or active), tracked, its breaker closed, and one probe succeeded.
// Commits when that set has at least `min` members and differs from the
// current ranks, or equals them and a worker asked to re-form (never for
// epoch 0). A fresh start (epoch 0, or no member of the current epoch live)
// waits for `max` members or for `join_grace` after `config_seen`. Nothing is
// committed for a done job.
EpochDecision DecideNextEpoch(const JobView& job, const BreakerStates& breakers,
                              const JobConfig& config, std::chrono::steady_clock::time_point now);

// Whether the controller marks a member failed after this round's probes: its
// breaker is open, the member is live, and it is in an epoch (active) or its
// breaker just opened (`before` was not open). A member that joined again
// while its breaker is still open only waits.
bool ShouldEvict(MemberState state, health::BreakerState before, health::BreakerState now);

}  // namespace cohort::coordinator
