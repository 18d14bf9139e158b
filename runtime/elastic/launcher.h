#pragma once
// The elastic agent of one host (`cohort launch`). It starts N local workers
// (each runs the command with the environment of runtime/elastic/env.h),
// and, without a coordinator address, an embedded one-node coordinator.
// Several launchers (on several hosts, or twice on one) given the same
// coordinator form one job: the first writes the job's parameters
// (coordinator::JobConfig) under coordinator::kJobConfigKey with CAS; a later
// one with different values is refused; one that arrives while the job runs
// adds its workers (the world grows up to `max`). Member ids are
// "<host>-<launcher pid>-w<slot>[.r<n>]", unique across hosts.
//
// Epochs are decided by the job controller in the coordinator's leader
// (coordinator/controller): it probes each worker's health server and keeps
// a circuit breaker per worker. The launcher is the fast path for deaths it
// can see:
//  - a child that exits or is killed is seen at once (reaped every
//    kLoopInterval) and marked failed, so the next epoch leaves it out;
//  - a child the controller evicted (hung: SIGSTOP, or cut off) is left
//    alone: once it answers again it joins again and is taken back at a
//    later epoch. Only a worker still evicted `hung_kill_ms` later is killed
//    (SIGKILL) and handled as a dead child.
// A dead worker is restarted (a new member id) up to `max_restarts` times in
// all and joins a later epoch. The launcher fails when fewer than `min`
// workers are alive in the job and it has no restart left. These decisions
// are the pure functions of runtime/elastic/launch_policy.h.
//
// Output: the workers' progress (rank 0 of each epoch) on stdout, the
// launcher's events on stderr; Run returns one JSON object: the final rank
// 0's summary plus the launcher's fields.

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/controller/job_controller.h"
#include "core/status.h"

namespace cohort::elastic {

struct LaunchOptions {
  int nproc = 0;
  int min = -1;             // -1: nproc
  int max = -1;             // -1: nproc
  std::string coordinator;  // empty: an embedded one-node coordinator
  std::string token_file;   // with coordinator
  std::string data_dir;     // embedded coordinator's WAL (default: a temp dir)
  std::string job = "job";  // key prefix of the job in the coordinator
  int max_restarts = 0;     // restarts of dead workers, in all
  int64_t collective_timeout_ms =
      5000;                     // gloo bootstrap and operations: how long a hung peer blocks
  int64_t snapshot_every = 10;  // steps between in-memory copies of the state
  // The first epoch waits this long for all nproc workers, then takes >= min.
  int64_t join_grace_ms = coordinator::kDefaultJoinGrace.count();
  // Health thresholds of the job controller (coordinator/controller/job_controller.h).
  int64_t health_pause_ms =
      coordinator::kDefaultHealthPause.count();              // heartbeat silence tolerated
  double phi_threshold = coordinator::kDefaultPhiThreshold;  // the breaker opens above it
  int64_t probe_interval_ms =
      coordinator::kDefaultProbeInterval.count();  // health probes, this often
  int64_t probe_deadline_ms =
      coordinator::kDefaultProbeDeadline.count();  // a probe not answered in time failed
  int failure_threshold = coordinator::kDefaultFailureThreshold;  // consecutive failed probes: open
  int64_t cooldown_ms =
      coordinator::kDefaultCooldown.count();  // open -> half-open; doubles per re-open
  int64_t hung_kill_ms = 60000;  // an evicted worker still evicted this long is killed (0: never)
  int metrics_port = -1;         // worker i serves P + i (0: any free port); -1: off
  std::string metrics_address;   // the workers' metrics bind address (empty: 0.0.0.0)
  std::vector<std::string> command;  // what each worker runs
};

// Fills min/max from nproc when -1; InvalidArgument naming the flag
// (--nproc, --min, ...) for a value out of range.
Status CheckLaunchOptions(LaunchOptions* o);

// How the launcher starts, signals and reaps its workers: fork/exec in
// production (ForkSpawner), a fake in tests.
class ProcessSpawner {
 public:
  virtual ~ProcessSpawner() = default;
  // Starts `argv` with `env` (NAME=value) added to this process's
  // environment; dies with the launcher. Returns the pid.
  virtual Result<int> Spawn(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env) = 0;
  virtual void Signal(int pid, int sig) = 0;
  // A child that ended since the last call: its pid and wait status.
  virtual std::optional<std::pair<int, int>> Reap() = 0;
};
std::unique_ptr<ProcessSpawner> ForkSpawner();

struct LaunchResult {
  int exit_code = 0;       // 0 done, 1 failed, 128 + signal when stopped
  nlohmann::json summary;  // the final rank 0's summary + the launcher's fields
};

// Runs the job to its end. SIGINT and SIGTERM stop the workers.
LaunchResult RunLauncher(const LaunchOptions& o, ProcessSpawner& spawner);

}  // namespace cohort::elastic
