#include "runtime/elastic/worker.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <thread>

#include "collectives/gloo/gloo_communicator.h"
#include "coordinator/client/client.h"
#include "coordinator/client/flags.h"
#include "core/clock.h"
#include "core/logging.h"
#include "runtime/checkpoint.h"
#include "runtime/elastic/agreement.h"
#include "runtime/elastic/bootstrap.h"
#include "runtime/elastic/committer.h"
#include "runtime/elastic/coordinator_store.h"
#include "runtime/elastic/epoch_store.h"
#include "runtime/elastic/health_server.h"
#include "runtime/elastic/heartbeat.h"
#include "runtime/resize_policy.h"
#include "runtime/run_report.h"
#include "runtime/trainer.h"
#include "runtime/worker_metrics.h"

namespace cohort::elastic {
namespace {

using Ms = std::chrono::milliseconds;

// Errors that no new epoch can fix: the job must stop.
bool Fatal(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kDataLoss:
    case StatusCode::kNotFound:
    case StatusCode::kIoError:
      return true;
    default:
      return false;
  }
}

// What one epoch trained with, for the summary.
struct EpochRecord {
  uint64_t epoch = 0;
  int world_size = 0;
  int64_t batch_per_rank = 0, global_batch = 0;
  double lr = 0;
  int64_t start_step = 0;
  std::string restored_from;  // "snapshot", "checkpoint step N" or "start"
};

struct Recovery {
  uint64_t epoch = 0;          // the epoch training resumed in
  std::string cause;           // why the previous epoch ended, as this worker saw it
  int64_t detected_at_ms = 0;  // wall clock: this worker left the failed epoch
  int64_t resumed_at_ms = 0;   // wall clock: the first step completed after it
};

// What one epoch built: the world communicator, its groups and the trainer.
struct EpochRun {
  uint64_t epoch = 0;
  int rank = 0, world = 0;
  std::unique_ptr<GlooCommunicator> comm;
  std::unique_ptr<Communicator> self;
  std::unique_ptr<Trainer> trainer;
  std::unique_ptr<CoordinatorCommitter>
      committer;  // rank 0 with checkpoint.dir; the trainer points to it
  ResizeDecision resize;
  bool lead() const { return rank == 0; }
};

Status CheckElasticConfig(Config* c, int nproc) {
  if (c->train.device == "cuda") {
    return InvalidArgument(
        "config " + c->source +
        ": elastic training (cohort launch) runs on the CPU over gloo for now; train.device "
        "cuda needs an mpirun job (cohort train under mpirun, NCCL between the GPUs)");
  }
  c->train.device = "cpu";  // auto: the CPU, as above
  if (c->parallel.tensor != 1) {
    return InvalidArgument(
        "config " + c->source +
        ": elastic training (cohort launch) supports data parallelism only (ZeRO 0 or 1) for "
        "now; set parallel.tensor 1");
  }
  if (c->train.global_batch > 0) {  // the per-rank batch is what an elastic job keeps
    if (c->train.global_batch % nproc != 0) {
      return InvalidArgument("config " + c->source + ": train.global_batch " +
                             std::to_string(c->train.global_batch) +
                             " does not divide over --nproc " + std::to_string(nproc));
    }
    c->train.batch_per_rank = c->train.global_batch / nproc;
    c->train.global_batch = 0;
  }
  return Status::Ok();
}

}  // namespace

class Worker::Impl {
 public:
  Impl(WorkerOptions o, ElasticEnv env)
      : o_(std::move(o)), env_(std::move(env)), config_(o_.config) {}
  Status Setup();
  Result<nlohmann::json> Run();

 private:
  Status StartMetrics();
  Status Join();
  // Waits for an epoch after `after` that lists this member. nullopt: the
  // job finished without this worker.
  Result<std::optional<coordinator::JobInfo>> WaitForEpoch(uint64_t after);
  // One epoch: build, agree on the state, train. OK when the job's steps are
  // done; a non-fatal error ends the epoch.
  Status RunEpoch(const coordinator::JobInfo& job, int rank);
  Result<EpochRun> BuildEpoch(const coordinator::JobInfo& job, int rank);
  // The coordinator's newest committed checkpoint newer than `newest`, loaded
  // into snapshot_ (rank 0). Returns its step, or -1. *committed_step: the
  // newest step the coordinator committed.
  int64_t LoadCommittedCheckpoint(uint64_t epoch, int64_t newest, int64_t* committed_step);
  // Agrees on the newest state, restores it; returns where it came from.
  Result<std::string> RestoreNewestState(EpochRun& e);
  void SetStepHook(EpochRun& e, int64_t total, bool* first_step);
  Status TrainEpoch(EpochRun& e);
  nlohmann::json Summary(const TrainSummary& s, uint64_t epoch, int rank, int world) const;
  void Print(const std::string& line) const;

  WorkerOptions o_;
  ElasticEnv env_;
  Config config_;
  coordinator::ClientOptions co_;
  std::unique_ptr<coordinator::Client> client_;
  std::unique_ptr<HealthServer> health_;
  std::string host_;  // the advertised host: health server and Gloo listen for peers there
  std::unique_ptr<Heartbeat> heartbeat_;
  std::atomic<int64_t> last_step_{0};  // the last step this worker completed (heartbeat reads it)
  std::optional<LoadedCheckpoint> snapshot_;  // the newest state this worker holds
  LossLog losses_;
  int64_t samples_seen_ = 0, steps_run_ = 0, steps_redone_ = 0, max_step_ = 0;
  std::vector<Recovery> recoveries_;
  std::vector<EpochRecord> epoch_log_;
  int64_t start_batch_per_rank_ = 0;    // the per-rank batch at --nproc ranks
  int64_t checkpoints_committed_ = 0;   // through the coordinator, while this worker was rank 0
  std::optional<Recovery> recovering_;  // set between a failed epoch and the next completed step
  int epochs_joined_ = 0;
  uint64_t joined_epoch_ = 0;  // the job's epoch when this worker joined
  double train_start_ = 0;
  nlohmann::json summary_ = nlohmann::json::object();       // of the epoch that finished the job
  std::unique_ptr<WorkerMetrics> metrics_;                  // with a metrics port
  std::unique_ptr<metrics::MetricsServer> metrics_server_;  // reads metrics_: declared after it
};

void Worker::Impl::Print(const std::string& line) const {
  if (o_.print) {
    o_.print(line);
    return;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// The Prometheus endpoint: the launcher's port for this slot, else the
// command's --metrics-port + the slot.
Status Worker::Impl::StartMetrics() {
  int port = env_.metrics_port;
  if (port < 0 && o_.metrics_port != kMetricsOff) {
    COHORT_ASSIGN_OR_RETURN(port, SlotMetricsPort(o_.metrics_port, env_.local_rank));
  }
  if (port < 0) return Status::Ok();
  metrics_ = std::make_unique<WorkerMetrics>();
  COHORT_ASSIGN_OR_RETURN(
      metrics_server_,
      ServeMetrics(&metrics_->registry(),
                   env_.metrics_address.empty() ? o_.metrics_address : env_.metrics_address, port,
                   "cohort train: member " + env_.worker));
  return Status::Ok();
}

Status Worker::Impl::Setup() {
  COHORT_RETURN_IF_ERROR(CheckElasticConfig(&config_, env_.nproc));
  COHORT_RETURN_IF_ERROR(StartMetrics());
  start_batch_per_rank_ = config_.train.batch_per_rank;
  COHORT_ASSIGN_OR_RETURN(co_.token, coordinator::ReadTokenFile(env_.token_file));
  COHORT_ASSIGN_OR_RETURN(co_.endpoints, coordinator::ParseEndpoints(env_.coordinator));
  co_.deadline = Ms(10000);
  COHORT_ASSIGN_OR_RETURN(client_, coordinator::Client::Create(co_));
  // Checkpoints the coordinator committed are read at each epoch start
  // (RunEpoch), not here: a newer in-memory copy on any rank wins over them.
  COHORT_ASSIGN_OR_RETURN(health_, HealthServer::Start());
  if (const char* a = std::getenv(kEnvAdvertiseHost); a != nullptr && *a != '\0') {
    host_ = a;
  } else {
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    host_ = name;
  }
  return Join();
}

// Joins at the job's current epoch (a commit in between makes it stale: retry).
Status Worker::Impl::Join() {
  const std::string address = host_ + ":" + std::to_string(health_->port());
  for (int attempt = 0;; ++attempt) {
    COHORT_ASSIGN_OR_RETURN(auto job, client_->GetJob());
    Status j = client_->Join(env_.worker, address, job.epoch);
    if (j.ok()) {
      joined_epoch_ = job.epoch;
      break;
    }
    if (attempt >= 20 || coordinator::RefusalOf(j) != coordinator::Refusal::kStaleEpoch) {
      return j.WithContext("joining job as member '" + env_.worker + "'");
    }
  }
  heartbeat_ = std::make_unique<Heartbeat>(co_, env_.job, env_.worker, address, &last_step_);
  return Status::Ok();
}

Result<std::optional<coordinator::JobInfo>> Worker::Impl::WaitForEpoch(uint64_t after) {
  const auto deadline = std::chrono::steady_clock::now() + kMaxEpochWait;
  while (std::chrono::steady_clock::now() < deadline) {
    auto job = client_->GetJob();
    if (job.ok() && job->epoch > after &&
        std::find(job->ranks.begin(), job->ranks.end(), env_.worker) != job->ranks.end()) {
      return std::optional<coordinator::JobInfo>(std::move(*job));
    }
    auto done = client_->Get(DoneKey(env_.job));
    if (done.ok() && done->has_value()) return std::optional<coordinator::JobInfo>();
    std::this_thread::sleep_for(kEpochPollInterval);
  }
  return DeadlineExceeded("member '" + env_.worker + "' was in no epoch after epoch " +
                          std::to_string(after) + " for " +
                          std::to_string(kMaxEpochWait.count() / 1000) +
                          " s; is the launcher (or whatever commits epochs) running?");
}

Result<EpochRun> Worker::Impl::BuildEpoch(const coordinator::JobInfo& job, int rank) {
  EpochRun e;
  e.epoch = job.epoch;
  e.rank = rank;
  e.world = static_cast<int>(job.ranks.size());
  const std::string prefix = coordinator::EpochStorePrefix(env_.job, e.epoch);
  COHORT_ASSIGN_OR_RETURN(auto cstore, CoordinatorStore::Create(co_, prefix));
  auto store = std::make_shared<EpochStore>(cstore, &heartbeat_->latest_epoch(), e.epoch);
  GlooOptions go;
  go.prefix = "gloo";
  go.hostname = host_;  // peers on other hosts must reach this rank
  go.timeout = env_.collective_timeout;
  COHORT_ASSIGN_OR_RETURN(
      e.comm, BootstrapGloo(store, rank, e.world, go, heartbeat_->latest_epoch(), e.epoch));
  COHORT_ASSIGN_OR_RETURN(e.self, e.comm->SplitGroup(rank, 0));
  ParallelGroups groups{e.comm.get(), e.comm.get(), e.self.get()};
  // The resize policy: this epoch's batch and learning rate.
  COHORT_ASSIGN_OR_RETURN(e.resize, PlanResize(config_.elastic, start_batch_per_rank_, env_.nproc,
                                               e.world, config_.optimizer.lr));
  if (e.resize.rounded && e.lead()) {
    COHORT_LOG_WARN(
        "elastic.batch global: {} does not divide over {} ranks; {} per rank ({} global)",
        start_batch_per_rank_ * env_.nproc, e.world, e.resize.batch_per_rank,
        e.resize.global_batch);
  }
  Config epoch_config = config_;
  epoch_config.train.batch_per_rank = e.resize.batch_per_rank;
  epoch_config.optimizer.lr = static_cast<float>(e.resize.lr);
  // The policy scales the whole schedule: its floor with its peak, so a
  // cosine decay still falls from the (scaled) peak to the (scaled) floor.
  epoch_config.train.lr_schedule.min_lr =
      static_cast<float>(config_.train.lr_schedule.min_lr * e.resize.lr_scale);
  COHORT_ASSIGN_OR_RETURN(e.trainer, Trainer::Create(epoch_config, groups));
  if (metrics_) {
    metrics_->SetLayout(rank, e.world, e.epoch);
    metrics_->OnTrainerStart();
    e.trainer->set_step_observer([this](const StepStats& st) {
      if (recovering_)
        metrics_->OnRecovery();  // the first step after a failure (the step hook records it)
      metrics_->OnStep(st);
    });
  }
  if (e.lead() && !config_.checkpoint.dir.empty()) {
    COHORT_ASSIGN_OR_RETURN(
        e.committer, CoordinatorCommitter::Create(co_, env_.job, e.epoch, &checkpoints_committed_));
    e.trainer->set_checkpoint_committer(e.committer.get());
  }
  return e;
}

int64_t Worker::Impl::LoadCommittedCheckpoint(uint64_t epoch, int64_t newest,
                                              int64_t* committed_step) {
  // A failure here only costs the checkpoint: the copies in memory remain.
  auto listed = ListCommittedCheckpoints(*client_, env_.job);
  if (!listed.ok())
    COHORT_LOG_WARN("cannot list committed checkpoints: {}", listed.status().message());
  std::vector<CommittedCheckpoint> committed =
      listed.ok() ? *listed : std::vector<CommittedCheckpoint>{};
  for (const auto& c : committed) *committed_step = std::max(*committed_step, c.step);
  std::erase_if(committed,
                [&](const CommittedCheckpoint& c) { return c.step <= newest || o_.no_resume; });
  if (committed.empty()) return -1;
  std::vector<std::string> warnings;
  auto ck = LoadNewestCommitted(committed, &warnings);
  for (const auto& w : warnings) COHORT_LOG_WARN("{}", w);
  if (!ck.ok()) {
    COHORT_LOG_WARN("no committed checkpoint newer than step {} loads: {}", newest,
                    ck.status().message());
    return -1;
  }
  Print("cohort train: epoch " + std::to_string(epoch) +
        ": restoring the coordinator-committed checkpoint at step " +
        std::to_string(ck->layout.step));
  const int64_t step = ck->layout.step;
  snapshot_ = std::move(*ck);
  return step;
}

// The newest state any rank holds, from the lowest rank holding it; rank 0
// first loads the coordinator's newest committed checkpoint when it is newer
// than all of them.
Result<std::string> Worker::Impl::RestoreNewestState(EpochRun& e) {
  COHORT_ASSIGN_OR_RETURN(int64_t newest,
                          NewestStep(*e.comm, snapshot_ ? snapshot_->layout.step : -1));
  int64_t from_lead[2] = {-1,
                          0};  // the committed checkpoint rank 0 loaded; the newest committed step
  if (e.lead() && !config_.checkpoint.dir.empty()) {
    from_lead[0] = LoadCommittedCheckpoint(e.epoch, newest, &from_lead[1]);
  }
  COHORT_RETURN_IF_ERROR(e.comm->Broadcast(from_lead, 2, DType::kI64, 0));
  // Steps redone after a recovery must not rewrite a committed checkpoint.
  e.trainer->set_checkpoint_floor(from_lead[1]);
  COHORT_ASSIGN_OR_RETURN(
      auto state, ShareNewestState(*e.comm, snapshot_, [&] { return e.trainer->EmptyState(); }));
  if (!state) {
    COHORT_ASSIGN_OR_RETURN(auto start, e.trainer->CaptureState());
    snapshot_ = std::move(start);
    return std::string("start");
  }
  COHORT_RETURN_IF_ERROR(e.trainer->Restore(*state));
  snapshot_ = std::move(state);
  // Rank 0 loaded a checkpoint only when it beat every copy: then it is the newest state.
  return from_lead[0] >= 0 ? "checkpoint step " + std::to_string(from_lead[0])
                           : std::string("snapshot");
}

void Worker::Impl::SetStepHook(EpochRun& e, int64_t total, bool* first_step) {
  const int64_t global_batch = e.trainer->batch_per_rank() * e.world;
  e.trainer->set_step_hook(
      [this, &e, total, global_batch, first_step](int64_t step, double loss) -> Status {
        losses_.Record(step, loss);
        samples_seen_ += global_batch;
        ++steps_run_;
        max_step_ = std::max(max_step_, step);
        last_step_.store(step);
        if (*first_step) {
          *first_step = false;
          // Best effort: only the launcher's recovery figures read it.
          if (e.lead())
            (void)client_->Put(ResumedKey(env_.job, e.epoch), std::to_string(WallClockMs()));
        }
        if (recovering_) {
          recovering_->epoch = e.epoch;
          recovering_->resumed_at_ms = WallClockMs();
          recoveries_.push_back(*recovering_);
          recovering_.reset();
        }
        if (step % env_.snapshot_every == 0) {
          COHORT_ASSIGN_OR_RETURN(auto state, e.trainer->CaptureState());
          snapshot_ = std::move(state);
        }
        const uint64_t latest = heartbeat_->latest_epoch().load();
        if (step < total && latest > e.epoch) {
          return Aborted("epoch " + std::to_string(latest) + " committed (membership changed)");
        }
        return Status::Ok();
      });
}

Status Worker::Impl::TrainEpoch(EpochRun& e) {
  Trainer& trainer = *e.trainer;
  const int64_t start = trainer.step();
  const int64_t total = config_.train.steps;
  if (start < max_step_) steps_redone_ += max_step_ - start;
  if (e.lead()) {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "cohort train: epoch %llu: %d rank%s (gloo), batch %lld/rank (%lld global), lr "
                  "%g, from step %lld "
                  "of %lld",
                  static_cast<unsigned long long>(e.epoch), e.world, e.world == 1 ? "" : "s",
                  static_cast<long long>(trainer.batch_per_rank()),
                  static_cast<long long>(trainer.batch_per_rank() * e.world), e.resize.lr,
                  static_cast<long long>(start), static_cast<long long>(total));
    Print(line);
  }
  bool first_step = true;
  SetStepHook(e, total, &first_step);
  auto report = [&](const StepReport& r) {
    if (e.lead()) Print(ProgressLine(config_, r, start + r.step, total));
  };
  COHORT_ASSIGN_OR_RETURN(TrainSummary s, trainer.Run(std::max<int64_t>(0, total - start), report));
  if (metrics_) metrics_->OnRunEnd(s);
  if (!o_.save_params.empty() && e.lead()) {
    COHORT_ASSIGN_OR_RETURN(auto full, trainer.FullParams());
    COHORT_RETURN_IF_ERROR(WriteParams(o_.save_params, full, config_, total, e.world));
  }
  summary_ = Summary(s, e.epoch, e.rank, e.world);
  return Status::Ok();
}

Status Worker::Impl::RunEpoch(const coordinator::JobInfo& job, int rank) {
  COHORT_ASSIGN_OR_RETURN(EpochRun e, BuildEpoch(job, rank));
  ++epochs_joined_;
  COHORT_ASSIGN_OR_RETURN(std::string restored_from, RestoreNewestState(e));
  const int64_t batch = e.trainer->batch_per_rank();
  epoch_log_.push_back(
      {e.epoch, e.world, batch, batch * e.world, e.resize.lr, e.trainer->step(), restored_from});
  return TrainEpoch(e);
}

nlohmann::json Worker::Impl::Summary(const TrainSummary& s, uint64_t epoch, int rank,
                                     int world) const {
  const int64_t total = config_.train.steps;
  nlohmann::json rec = nlohmann::json::array();
  for (const auto& r : recoveries_) {
    rec.push_back({{"epoch", r.epoch},
                   {"cause", r.cause},
                   {"detected_at_ms", r.detected_at_ms},
                   {"resumed_at_ms", r.resumed_at_ms},
                   {"seconds", static_cast<double>(r.resumed_at_ms - r.detected_at_ms) / 1e3}});
  }
  nlohmann::json epochs_json = nlohmann::json::array();
  for (const auto& e : epoch_log_) {
    epochs_json.push_back({{"epoch", e.epoch},
                           {"world_size", e.world_size},
                           {"batch_per_rank", e.batch_per_rank},
                           {"global_batch", e.global_batch},
                           {"lr", e.lr},
                           {"start_step", e.start_step},
                           {"restored_from", e.restored_from}});
  }
  const double wall = MonotonicSeconds() - train_start_;
  const double initial = losses_.Initial(), final_loss = losses_.Final();
  nlohmann::json j = {{"world_size", world},
                      {"backend", "gloo"},
                      {"elastic", true},
                      {"member", env_.worker},
                      {"rank", rank},
                      {"epoch", epoch},
                      {"epochs_joined", epochs_joined_},
                      {"steps", total},
                      {"global_batch", s.global_batch},
                      {"batch_per_rank", s.global_batch / std::max(1, world)},
                      {"params", s.num_params},
                      {"initial_loss", initial},
                      {"final_loss", final_loss},
                      {"last_loss", s.last_loss},
                      {"loss_ratio", initial > 0 ? final_loss / initial : 0.0},
                      {"samples_seen", samples_seen_},
                      {"steps_run", steps_run_},
                      {"steps_redone", steps_redone_},
                      {"samples_per_s", wall > 0 ? static_cast<double>(samples_seen_) / wall : 0.0},
                      {"wall_s", wall},
                      {"step_ms", s.step_ms},
                      {"allreduce_ms", s.allreduce_ms},
                      {"allreduce_share", s.allreduce_share},
                      {"snapshot_every", env_.snapshot_every},
                      {"recoveries", rec},
                      {"epoch_history", epochs_json},
                      {"checkpoints_committed", checkpoints_committed_},
                      {"end_step", total},
                      {"config_hash", std::to_string(config_.Hash())}};
  // As in `cohort train`'s summary; the evaluation is the final epoch's last one.
  AddRunFields(config_, s, &j);
  return j;
}

Result<nlohmann::json> Worker::Impl::Run() {
  train_start_ = MonotonicSeconds();
  // An epoch committed before this process joined cannot mean it, even when
  // it lists this member id (a job restarted against the same coordinator
  // data reuses the ids of its previous run).
  uint64_t after = joined_epoch_;
  for (;;) {
    COHORT_ASSIGN_OR_RETURN(auto job, WaitForEpoch(after));
    if (!job) {
      COHORT_LOG_WARN("member {}: the job finished while it waited for an epoch", env_.worker);
      return nlohmann::json::object();
    }
    const int rank = static_cast<int>(std::find(job->ranks.begin(), job->ranks.end(), env_.worker) -
                                      job->ranks.begin());
    COHORT_LOG_INFO("member {}: epoch {} rank {} of {}", env_.worker, job->epoch, rank,
                    job->ranks.size());
    Status st = RunEpoch(*job, rank);
    if (st.ok()) break;
    if (Fatal(st)) return st;
    // The epoch failed: everything it built is gone; wait for the next one.
    COHORT_LOG_INFO("member {}: epoch {} ended: {}", env_.worker, job->epoch, st.message());
    if (!recovering_) recovering_ = Recovery{0, st.message(), WallClockMs(), 0};
    (void)client_->Put(ReformKey(env_.job, job->epoch), env_.worker);
    after = job->epoch;
  }
  // No Leave: a member leaving would change the membership under the peers
  // still finishing their last step; the launcher sees the exit instead.
  heartbeat_.reset();
  return summary_;
}

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() = default;

Result<std::unique_ptr<Worker>> Worker::Create(WorkerOptions options, ElasticEnv env) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(env));
  COHORT_RETURN_IF_ERROR(impl->Setup());
  return std::unique_ptr<Worker>(new Worker(std::move(impl)));
}

Result<nlohmann::json> Worker::Run() { return impl_->Run(); }

}  // namespace cohort::elastic
