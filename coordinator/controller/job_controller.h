#pragma once
// The job controller: decides the membership of an elastic job. Every
// coordinator node (and the EmbeddedCoordinator) runs one; it acts only while
// its node is the Raft leader, so killing the leader moves it to the new
// leader. CommitEpoch compares on the previous epoch, so a controller that
// lost leadership and still commits is refused (a stale controller is
// harmless).
//
// What it does while leader, every probe interval:
//   - reads the job (GetJob) and the job config (kJobConfigKey, written by
//     the first `cohort launch` with CAS);
//   - probes every joining/active member's health address (grpc.health.v1
//     Check, proto/health.proto) with a deadline, all in parallel;
//   - keeps one health::CircuitBreaker per member: a failed probe counts
//     towards failure_threshold, heartbeat arrivals (the registry's
//     last_heartbeat_ms moving) and successful probes feed its phi-accrual
//     detector. An open breaker marks the member failed (MarkFailed), so the
//     next epoch leaves it out. After a cool-down (doubling per re-open) the
//     breaker is half-open and probed again; once it closes, a member that
//     joined again is taken back at a later epoch;
//   - commits the first epoch once `max` members are healthy, or at least
//     `min` after the join grace; then a new epoch whenever the healthy set
//     changes (survivors keep their rank order; newcomers follow, in id
//     order, up to `max`), or a worker asked for one (ReformKey). These
//     choices are pure functions (coordinator/controller/job_decision.h):
//     each round fetches, decides, then acts;
//   - publishes each member's breaker state under HealthKey (on change only)
//     for `cohort status`;
//   - stops deciding once the job is done (DoneKey).
//
// Thread safety: the controller owns one thread; Stop() (and the destructor)
// may be called from any one other thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "coordinator/controller/job_config.h"  // JobConfig, ValidateJobConfig
#include "coordinator/controller/job_keys.h"    // the job's keys (kJobConfigKey, DoneKey, ...)
#include "core/status.h"

namespace cohort::coordinator {

struct JobControllerOptions {
  std::string endpoint;             // this node's client address (host:port)
  std::string token;                // the cluster's shared secret
  std::string tls_ca_pem;           // non-empty: TLS to the node (PEM of the CA)
  std::function<bool()> is_leader;  // thread-safe: whether this node leads now
};

class JobController {
 public:
  explicit JobController(JobControllerOptions options);
  ~JobController() { Stop(); }
  JobController(const JobController&) = delete;
  JobController& operator=(const JobController&) = delete;
  // Joins the thread; idempotent.
  void Stop();
  // Each tracked member's breaker (0 closed, 1 half-open, 2 open) after the
  // last round; empty while this node does not lead. Thread-safe.
  std::map<std::string, int> Breakers() const;

  struct State;

 private:
  void Loop();
  JobControllerOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                    // guarded by mu_
  std::map<std::string, int> breakers_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace cohort::coordinator
