#pragma once
// The launcher's decisions (runtime/elastic/launcher.h) as pure functions of
// what it knows, apart from the I/O that gathers it and acts on them
// (tests/runtime/elastic/launch_policy_test.cc drives them with tables).

#include <chrono>
#include <optional>
#include <string>

namespace cohort::elastic {

// A worker process ended.
struct ExitFacts {
  bool exited_zero = false;            // it finished the job
  bool job_finishing = false;          // another worker already finished it
  bool stopping = false;               // the launcher is stopping on a signal
  bool failed = false;                 // the job already failed
  int restarts = 0, max_restarts = 0;  // used so far, allowed in all
};
enum class ExitAction {
  kFinished,       // the job is done: mark it, let the others finish
  kIgnore,         // the job is ending anyway
  kRestart,        // mark it failed, start a new incarnation
  kNoRestartLeft,  // mark it failed, leave the slot empty
};
ExitAction DecideOnExit(const ExitFacts& f);

// A live worker as the coordinator's registry sees it, each poll.
struct EvictionFacts {
  bool failed_in_registry = false;  // the job controller evicted it
  std::optional<std::chrono::steady_clock::time_point>
      evicted_since;  // when the launcher first saw that
  std::chrono::steady_clock::time_point now;
  std::chrono::milliseconds hung_kill{0};  // 0: never kill
};
enum class EvictionAction {
  kNone,
  kEvicted,       // newly evicted: note the time, report it
  kAnswersAgain,  // it is back in good standing: forget the eviction
  kKill,          // evicted for longer than hung_kill: kill it
};
EvictionAction DecideOnEviction(const EvictionFacts& f);

// Whether the job must give up: fewer than `min` workers alive in the whole
// job (here and under other launchers) and no restart left. The reason, or
// nullopt.
std::optional<std::string> GiveUpReason(int alive_here, int alive_elsewhere, int min, int restarts,
                                        int max_restarts);

}  // namespace cohort::elastic
