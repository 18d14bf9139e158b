#include "runtime/worker_metrics.h"

#include <cstdio>

#include "cohort/config.h"

namespace cohort {

Status CheckMetricsPort(int port, const std::string& flag) {
  if (port == kMetricsOff || (port >= 0 && port <= metrics::kMaxPort)) return Status::Ok();
  return InvalidArgument(flag + " " + std::to_string(port) + " is outside 0.." +
                         std::to_string(metrics::kMaxPort) + " (0: any free port)");
}

Result<int> SlotMetricsPort(int base, int slot, const std::string& flag) {
  COHORT_RETURN_IF_ERROR(CheckMetricsPort(base, flag));
  if (base <= 0) return base;
  const int64_t port = static_cast<int64_t>(base) + slot;
  if (port > metrics::kMaxPort) {
    return InvalidArgument(flag + " " + std::to_string(base) + " + local rank " +
                           std::to_string(slot) + " = " + std::to_string(port) + " is over " +
                           std::to_string(metrics::kMaxPort) + "; pick a lower port");
  }
  return static_cast<int>(port);
}

Result<std::unique_ptr<metrics::MetricsServer>> ServeMetrics(const metrics::Registry* registry,
                                                             const std::string& address, int port,
                                                             const std::string& who) {
  metrics::MetricsServerOptions o;
  if (!address.empty()) o.address = address;
  o.port = port;
  COHORT_ASSIGN_OR_RETURN(auto server, metrics::MetricsServer::Start(registry, o));
  std::fprintf(stderr, "%s: metrics on %s\n", who.c_str(), server->url().c_str());
  std::fflush(stderr);
  return server;
}

WorkerMetrics::WorkerMetrics() {
  metrics::Registry& r = registry_;
  r.AddGauge("cohort_build_info", "Cohort's version; always 1",
             {{"version", COHORT_VERSION}, {"role", "worker"}})
      ->Set(1);
  steps_ = r.AddCounter(
      "cohort_train_steps_total",
      "Training steps this worker completed (steps redone after a recovery count again)");
  samples_ = r.AddCounter("cohort_train_samples_total",
                          "Samples this worker trained on (its part of each global batch)");
  global_step_ =
      r.AddGauge("cohort_train_global_step", "The job's step count after this worker's last step");
  loss_ = r.AddGauge("cohort_train_loss", "Global-batch loss of the last step");
  val_loss_ =
      r.AddGauge("cohort_train_val_loss", "Mean validation loss (nats) at the last evaluation");
  lr_ = r.AddGauge("cohort_train_learning_rate", "The learning rate of the last step");
  eval_accuracy_ = r.AddGauge("cohort_train_eval_accuracy",
                              "Test accuracy at the last evaluation (classifiers)");
  step_seconds_ =
      r.AddSummary("cohort_train_step_seconds",
                   "Wall time of a training step: data, compute, gradient sync and checkpoint");
  sync_seconds_ = r.AddSummary(
      "cohort_train_grad_sync_seconds",
      "Gradient sync time per step: all-reduce (reduce-scatter + all-gather under ZeRO-1)");
  sync_bytes_ = r.AddCounter("cohort_train_grad_sync_bytes_total",
                             "Bytes of gradient buffer the syncs reduced");
  sync_busbw_ =
      r.AddGauge("cohort_train_grad_sync_bus_bandwidth_bytes_per_second",
                 "Bus bandwidth of the last step's gradient sync: bytes / seconds x 2(n-1)/n, as "
                 "nccl-tests (0 on one rank)");
  world_size_ =
      r.AddGauge("cohort_train_world_size", "Ranks in the job (in the current epoch when elastic)");
  rank_ = r.AddGauge("cohort_train_rank", "This worker's rank");
  epoch_ = r.AddGauge("cohort_train_epoch",
                      "Membership epoch the worker trains in (elastic; 0 under mpirun)");
  recoveries_ = r.AddCounter("cohort_train_recoveries_total",
                             "Times this worker resumed training after a failure (elastic)");
  checkpoints_ = r.AddCounter("cohort_train_checkpoints_committed_total",
                              "Checkpoints committed while this worker trained");
}

void WorkerMetrics::SetLayout(int rank, int world_size, uint64_t epoch) {
  rank_->Set(rank);
  world_size_->Set(world_size);
  epoch_->Set(static_cast<double>(epoch));
}

void WorkerMetrics::OnTrainerStart() { checkpoints_seen_ = 0; }

void WorkerMetrics::CountCheckpoints(int64_t committed_by_trainer) {
  if (committed_by_trainer > checkpoints_seen_) {
    checkpoints_->Inc(static_cast<double>(committed_by_trainer - checkpoints_seen_));
    checkpoints_seen_ = committed_by_trainer;
  }
}

void WorkerMetrics::OnStep(const StepStats& s) {
  steps_->Inc();
  samples_->Inc(static_cast<double>(s.samples));
  global_step_->Set(static_cast<double>(s.step));
  loss_->Set(s.loss);
  lr_->Set(s.lr);
  if (s.val_loss >= 0) val_loss_->Set(s.val_loss);
  if (s.eval_accuracy >= 0) eval_accuracy_->Set(s.eval_accuracy);
  step_seconds_->Observe(s.step_s);
  sync_seconds_->Observe(s.sync_s);
  sync_bytes_->Inc(static_cast<double>(s.sync_bytes));
  const int n = s.data_ranks;
  sync_busbw_->Set(n > 1 && s.sync_s > 0 ? static_cast<double>(s.sync_bytes) / s.sync_s * 2.0 *
                                               (n - 1) / static_cast<double>(n)
                                         : 0.0);
  CountCheckpoints(s.checkpoints_committed);
}

void WorkerMetrics::OnRunEnd(const TrainSummary& s) { CountCheckpoints(s.checkpoints_committed); }

void WorkerMetrics::OnRecovery() { recoveries_->Inc(); }

}  // namespace cohort
