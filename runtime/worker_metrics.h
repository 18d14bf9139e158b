#pragma once
// The Prometheus endpoint of a training worker and of the `cohort` commands
// (`--metrics-port`, `--metrics-address`): port checks, starting the server,
// and the metrics of a worker (under mpirun or elastic). The registry and HTTP server are
// core/metrics*.h.

#include <cstdint>
#include <memory>
#include <string>

#include "core/metrics.h"
#include "core/metrics_server.h"
#include "core/status.h"
#include "runtime/trainer.h"

namespace cohort {

// --metrics-port's value when the flag is absent: no endpoint.
inline constexpr int kMetricsOff = -1;

// InvalidArgument naming `flag` unless port is kMetricsOff or in 0..65535.
Status CheckMetricsPort(int port, const std::string& flag = "--metrics-port");

// The port of the process in slot `slot` (a local rank) of a job whose first
// process serves `base`: base + slot, or 0 (any free port) when base is 0.
// InvalidArgument when that is over 65535.
Result<int> SlotMetricsPort(int base, int slot, const std::string& flag = "--metrics-port");

// Starts the endpoint for `registry` and prints "<who>: metrics on URL" to
// standard error, the line scripts look for. The registry must outlive the
// server.
Result<std::unique_ptr<metrics::MetricsServer>> ServeMetrics(const metrics::Registry* registry,
                                                             const std::string& address, int port,
                                                             const std::string& who);

// The metrics of one training worker (cohort train under mpirun, or elastic),
// updated from the training thread and read by the server's thread. Names
// are listed in the README ("Metrics").
class WorkerMetrics {
 public:
  WorkerMetrics();
  metrics::Registry& registry() { return registry_; }

  void SetLayout(int rank, int world_size, uint64_t epoch);
  // A new Trainer starts (its checkpoint count starts at 0).
  void OnTrainerStart();
  // After each step (the Trainer's step observer).
  void OnStep(const StepStats& s);
  // After Trainer::Run: counts the final checkpoint's commit.
  void OnRunEnd(const TrainSummary& s);
  // An elastic worker resumed training after a failure.
  void OnRecovery();

 private:
  void CountCheckpoints(int64_t committed_by_trainer);

  metrics::Registry registry_;
  metrics::Counter* steps_;
  metrics::Counter* samples_;
  metrics::Gauge* global_step_;
  metrics::Gauge* loss_;
  metrics::Gauge* val_loss_;
  metrics::Gauge* lr_;
  metrics::Gauge* eval_accuracy_;
  metrics::Summary* step_seconds_;
  metrics::Summary* sync_seconds_;
  metrics::Counter* sync_bytes_;
  metrics::Gauge* sync_busbw_;
  metrics::Gauge* world_size_;
  metrics::Gauge* rank_;
  metrics::Gauge* epoch_;
  metrics::Counter* recoveries_;
  metrics::Counter* checkpoints_;
  int64_t checkpoints_seen_ = 0;  // training thread only: the current Trainer's count already added
};

}  // namespace cohort
