#include "coordinator/controller/job_decision.h"

#include <algorithm>

namespace cohort::coordinator {

namespace {

bool LiveIn(const JobView& job, const std::string& id) {
  auto it = job.states.find(id);
  return it != job.states.end() && IsLive(it->second);
}

bool Eligible(const JobView& job, const BreakerStates& breakers, const std::string& id) {
  auto it = breakers.find(id);
  return it != breakers.end() && LiveIn(job, id) &&
         it->second.breaker == health::BreakerState::kClosed && it->second.ok_probes > 0;
}

}  // namespace

EpochDecision DecideNextEpoch(const JobView& job, const BreakerStates& breakers,
                              const JobConfig& config, std::chrono::steady_clock::time_point now) {
  using Kind = EpochDecision::Kind;
  if (job.done) return {};
  std::vector<std::string> next;
  for (const auto& id : job.ranks) {
    if (Eligible(job, breakers, id)) next.push_back(id);
  }
  for (const auto& [id, h] : breakers) {
    if (static_cast<int>(next.size()) >= config.max) break;
    if (Eligible(job, breakers, id) && std::find(next.begin(), next.end(), id) == next.end()) {
      next.push_back(id);
    }
  }
  if (static_cast<int>(next.size()) < config.min) return {};
  if (next == job.ranks) {
    if (job.epoch == 0) return {};
    if (!job.reform_requested) return {Kind::kReadReform, {}};
    if (!*job.reform_requested) return {};
  }
  // A fresh start: the first epoch, or one of a job run again whose previous
  // members are all gone. It waits for `max` members, or for the grace time.
  const bool fresh =
      job.epoch == 0 || std::none_of(job.ranks.begin(), job.ranks.end(),
                                     [&](const auto& id) { return LiveIn(job, id); });
  if (fresh && static_cast<int>(next.size()) < config.max &&
      now - job.config_seen < config.join_grace) {
    return {};
  }
  return {Kind::kCommit, std::move(next)};
}

bool ShouldEvict(MemberState state, health::BreakerState before, health::BreakerState now) {
  const bool newly_open = before != health::BreakerState::kOpen;
  return now == health::BreakerState::kOpen && IsLive(state) &&
         (state == MemberState::kActive || newly_open);
}

}  // namespace cohort::coordinator
