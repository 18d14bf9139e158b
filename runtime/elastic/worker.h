#pragma once
// One worker of an elastic job (the elastic mode of `cohort train`, started
// by the launcher, runtime/elastic/launcher.h), whose membership the
// coordinator decides.
//
// Life of a worker:
//   join as a member -> wait for an epoch that lists it -> build the world
//   communicator (gloo, bootstrapped through the coordinator under
//   "<job>/epoch-E", runtime/elastic/bootstrap.h) -> Trainer::Create -> agree
//   on the newest in-memory state any rank holds and broadcast it from that
//   rank (runtime/elastic/agreement.h) -> train. A failed collective (a dead
//   peer: connection reset; a hung one: the collective timeout), or a newer
//   epoch seen between steps, ends the epoch: the trainer and communicators
//   are destroyed and the worker waits for the next epoch. A heartbeat
//   thread keeps the member alive in the registry
//   (runtime/elastic/heartbeat.h).
//
// Batch and learning-rate policy on a size change: the config's `elastic`
// section (runtime/resize_policy.h), applied at each epoch start. The
// starting batch is the config's per-rank batch, or its global_batch split
// over the launcher's worker count. The default keeps the per-rank batch and
// the learning rate.
//
// State: a copy of parameters and optimizer state (ZeRO-1 partitions
// gathered) is taken every COHORT_SNAPSHOT_EVERY steps (and at each epoch
// start); on recovery the rank holding the newest copy broadcasts it, so
// every rank resumes from the same step; the steps since that copy are done
// again (steps_redone). With checkpoint.dir set, checkpoints are committed
// through the coordinator (runtime/elastic/committer.h); at an epoch start
// rank 0 loads the newest checkpoint the coordinator committed when it is
// newer than every in-memory copy (a damaged one: the previous committed
// one). A checkpoint directory the coordinator never committed is ignored.

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"
#include "runtime/config.h"
#include "runtime/elastic/env.h"

namespace cohort::elastic {

struct WorkerOptions {
  Config config;  // loaded, with the command's overrides (steps, checkpoint, device) applied
  bool no_resume = false;  // ignore the coordinator's committed checkpoints
  std::string
      save_params;        // non-empty: the final rank 0 writes the whole model there (safetensors)
  int metrics_port = -1;  // the command's --metrics-port (-1: off); the launcher's port wins
  std::string metrics_address;
  // Rank 0's lines for people (epochs, progress); default: standard output.
  std::function<void(const std::string&)> print;
};

class Worker {
 public:
  // InvalidArgument when the config asks for what elastic jobs do not do
  // (cuda, tensor parallelism, a global batch that does not divide).
  static Result<std::unique_ptr<Worker>> Create(WorkerOptions options, ElasticEnv env);
  ~Worker();

  // Joins, trains through epochs until the job's steps are done, and returns
  // the summary of the epoch this worker finished in (its "rank" field says
  // whether it was rank 0), or an empty object when the job finished while
  // it waited for an epoch. An error that no new epoch can fix (bad config,
  // damaged data, a refused join) ends it.
  Result<nlohmann::json> Run();

 private:
  class Impl;
  explicit Worker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort::elastic
