#pragma once
// The contract between the launcher (runtime/elastic/launcher.h, `cohort
// launch`) and the elastic workers it starts (runtime/elastic/worker.h, the
// elastic mode of `cohort train`): environment variables, one place for their
// names and defaults.
//
// A worker that finds COHORT_COORDINATOR set runs in elastic mode (no MPI):
// it joins the job as member COHORT_WORKER_ID, trains in whatever epoch the
// coordinator commits it into, and rebuilds its communicator in place when
// the membership changes.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "coordinator/controller/job_controller.h"
#include "core/status.h"

namespace cohort::elastic {

inline constexpr char kEnvCoordinator[] = "COHORT_COORDINATOR";  // host:port,...
inline constexpr char kEnvTokenFile[] = "COHORT_TOKEN_FILE";     // the cluster's secret
inline constexpr char kEnvJobId[] = "COHORT_JOB_ID";             // key prefix of the job
inline constexpr char kEnvWorkerId[] = "COHORT_WORKER_ID";    // member id, unique per incarnation
inline constexpr char kEnvLocalRank[] = "COHORT_LOCAL_RANK";  // slot on this host (0..nproc-1)
inline constexpr char kEnvNproc[] = "COHORT_NPROC";           // workers the launcher starts
inline constexpr char kEnvSummaryFile[] =
    "COHORT_SUMMARY_FILE";  // where a finishing worker writes its JSON
inline constexpr char kEnvCollectiveTimeoutMs[] = "COHORT_COLLECTIVE_TIMEOUT_MS";
inline constexpr char kEnvSnapshotEvery[] =
    "COHORT_SNAPSHOT_EVERY";  // steps between in-memory state copies
// The worker's Prometheus endpoint: the launcher's --metrics-port P + slot
// (or 0: any free port), and its --metrics-address. Unset: no endpoint.
inline constexpr char kEnvMetricsPort[] = "COHORT_METRICS_PORT";
inline constexpr char kEnvMetricsAddress[] = "COHORT_METRICS_ADDRESS";
// The host name a worker advertises for its health server (the coordinator's
// job controller probes host:port); default: the machine's host name.
inline constexpr char kEnvAdvertiseHost[] = "COHORT_ADVERTISE_HOST";

// Defaults and bounds (CONTRIBUTING.md, "Limits").
inline constexpr std::chrono::milliseconds kDefaultCollectiveTimeout{5000};
inline constexpr int64_t kDefaultSnapshotEvery = 10;
inline constexpr std::chrono::milliseconds kHeartbeatInterval{100};
inline constexpr std::chrono::milliseconds kEpochPollInterval{50};
// A worker that is in no epoch for this long (the launcher is gone, or never
// commits one with it) gives up with an error.
inline constexpr std::chrono::milliseconds kMaxEpochWait{120000};

// A worker reports its last completed step (StepKey) every this many heartbeats.
inline constexpr int kStepReportEveryHeartbeats = 10;

// The key a launcher sets once any worker has finished the job: workers still
// waiting for an epoch then exit 0 instead of waiting for peers that left.
// A worker whose epoch failed while the membership did not change (a
// collective timed out, a bootstrap raced a commit) asks for a new epoch by
// setting ReformKey; the coordinator's job controller then commits one with
// the live members (coordinator/controller/job_controller.h).
using coordinator::DoneKey;
using coordinator::ReformKey;
// Wall-clock ms at which rank 0 of `epoch` completed that epoch's first step:
// the launcher measures each recovery up to it, whichever worker survived.
using coordinator::ResumedKey;
using coordinator::StepKey;

struct ElasticEnv {
  std::string coordinator;
  std::string token_file;
  std::string job = "job";
  std::string worker;
  int local_rank = 0;
  int nproc = 1;
  std::string summary_file;
  std::chrono::milliseconds collective_timeout = kDefaultCollectiveTimeout;
  int64_t snapshot_every = kDefaultSnapshotEvery;
  int metrics_port = -1;  // -1: none given
  std::string metrics_address;
};

// nullopt when COHORT_COORDINATOR is unset (not elastic); InvalidArgument
// naming the variable when one is malformed or missing.
Result<std::optional<ElasticEnv>> ElasticEnvFromEnvironment();

}  // namespace cohort::elastic
