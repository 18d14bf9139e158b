#include "runtime/elastic/launch_policy.h"

namespace cohort::elastic {

ExitAction DecideOnExit(const ExitFacts& f) {
  if (f.exited_zero) return ExitAction::kFinished;
  if (f.job_finishing || f.stopping || f.failed) return ExitAction::kIgnore;
  return f.restarts < f.max_restarts ? ExitAction::kRestart : ExitAction::kNoRestartLeft;
}

EvictionAction DecideOnEviction(const EvictionFacts& f) {
  if (f.failed_in_registry && !f.evicted_since) return EvictionAction::kEvicted;
  if (!f.failed_in_registry && f.evicted_since) return EvictionAction::kAnswersAgain;
  if (f.evicted_since && f.hung_kill.count() > 0 && f.now - *f.evicted_since > f.hung_kill) {
    return EvictionAction::kKill;
  }
  return EvictionAction::kNone;
}

std::optional<std::string> GiveUpReason(int alive_here, int alive_elsewhere, int min, int restarts,
                                        int max_restarts) {
  const int alive = alive_here + alive_elsewhere;
  if (alive >= min || restarts < max_restarts) return std::nullopt;
  return std::to_string(alive) + " worker(s) alive in the job (" + std::to_string(alive_here) +
         " here), fewer than --min " + std::to_string(min) +
         ", and no restart left (--max-restarts " + std::to_string(max_restarts) + ")";
}

}  // namespace cohort::elastic
