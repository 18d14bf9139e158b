// Elastic mode of `cohort train` (tools/elastic.h): one worker of a job whose
// membership the coordinator decides.
//
// Life of a worker:
//   join as a member -> wait for an epoch that lists it -> build the world
//   communicator (gloo, bootstrapped through the coordinator under
//   "<job>/epoch-E") -> Trainer::Create -> agree on the newest in-memory state
//   any rank holds and broadcast it from that rank -> train. A failed
//   collective (a dead peer: connection reset; a hung one: the collective
//   timeout), or a newer epoch seen between steps, ends the epoch: the
//   trainer and communicators are destroyed and the worker waits for the next
//   epoch. A heartbeat thread keeps the member alive in the registry.
//
// Batch and learning-rate policy on a size change: the config's `elastic`
// section (runtime/resize_policy.h), applied at each epoch start. The
// starting batch is the config's per-rank batch, or its global_batch split
// over --nproc. The default keeps the per-rank batch and the learning rate.
//
// State: a copy of parameters and optimizer state (ZeRO-1 partitions
// gathered) is taken every COHORT_SNAPSHOT_EVERY steps (and at each epoch
// start); on recovery the rank holding the newest copy broadcasts it, so
// every rank resumes from the same step; the steps since that copy are done
// again (steps_redone). With checkpoint.dir set, checkpoints are committed
// through the coordinator (tools/checkpoint_registry.h); at an epoch start
// rank 0 loads the newest checkpoint the coordinator committed when it is
// newer than every in-memory copy (a damaged one: the previous committed
// one). A checkpoint directory the coordinator never committed is ignored.

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <grpcpp/grpcpp.h>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "collectives/gloo/gloo_communicator.h"
#include "coordinator/client/client.h"
#include "coordinator/client/coordinator_store.h"
#include "coordinator/server/node.h"
#include "proto/health.grpc.pb.h"
#include "core/logging.h"
#include "kernels/cpu/kernels.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/resize_policy.h"
#include "runtime/safetensors.h"
#include "runtime/trainer.h"
#include "tools/checkpoint_registry.h"
#include "tools/commands.h"
#include "tools/elastic.h"
#include "tools/run_report.h"
#include "tools/metrics_cmd.h"

namespace cohort::tools {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

Result<int64_t> EnvInt(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) {
    return InvalidArgument(std::string(name) + "='" + v + "' is not an integer in [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(x);
}

}  // namespace

Result<std::optional<ElasticEnv>> ElasticEnvFromEnvironment() {
  const char* coord = std::getenv(kEnvCoordinator);
  if (coord == nullptr || *coord == '\0') return std::optional<ElasticEnv>();
  ElasticEnv e;
  e.coordinator = coord;
  const char* token = std::getenv(kEnvTokenFile);
  const char* worker = std::getenv(kEnvWorkerId);
  if (token == nullptr || *token == '\0')
    return InvalidArgument(std::string(kEnvCoordinator) + " is set but " + kEnvTokenFile +
                           " is not");
  if (worker == nullptr || *worker == '\0')
    return InvalidArgument(std::string(kEnvCoordinator) + " is set but " + kEnvWorkerId +
                           " is not");
  e.token_file = token;
  e.worker = worker;
  if (const char* j = std::getenv(kEnvJobId); j != nullptr && *j != '\0') e.job = j;
  if (const char* s = std::getenv(kEnvSummaryFile); s != nullptr) e.summary_file = s;
  COHORT_ASSIGN_OR_RETURN(int64_t lr, EnvInt(kEnvLocalRank, 0, 0, 1 << 20));
  COHORT_ASSIGN_OR_RETURN(int64_t np, EnvInt(kEnvNproc, 1, 1, 1 << 20));
  COHORT_ASSIGN_OR_RETURN(
      int64_t to, EnvInt(kEnvCollectiveTimeoutMs, kDefaultCollectiveTimeout.count(), 100, 3600000));
  COHORT_ASSIGN_OR_RETURN(int64_t se,
                          EnvInt(kEnvSnapshotEvery, kDefaultSnapshotEvery, 1, int64_t{1} << 40));
  e.local_rank = static_cast<int>(lr);
  e.nproc = static_cast<int>(np);
  e.collective_timeout = std::chrono::milliseconds(to);
  e.snapshot_every = se;
  COHORT_ASSIGN_OR_RETURN(int64_t mp, EnvInt(kEnvMetricsPort, -1, -1, 65535));
  e.metrics_port = static_cast<int>(mp);
  if (const char* a = std::getenv(kEnvMetricsAddress); a != nullptr) e.metrics_address = a;
  return std::optional<ElasticEnv>(std::move(e));
}

namespace {

using Ms = std::chrono::milliseconds;

// A Store that gives up waiting once the job has moved past the epoch it
// bootstraps: a peer that went on to a newer epoch will never publish its
// address here, so waiting the whole timeout for it would only delay the
// next epoch.
class EpochStore final : public Store {
 public:
  EpochStore(std::shared_ptr<Store> base, const std::atomic<uint64_t>* latest, uint64_t epoch)
      : base_(std::move(base)), latest_(latest), epoch_(epoch) {}
  Status Set(std::string_view key, std::string_view value) override {
    return base_->Set(key, value);
  }
  Result<std::string> Get(std::string_view key, Ms timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now());
      auto r = base_->Get(key, std::clamp(left, Ms(1), Ms(200)));
      if (r.ok() || r.status().code() != StatusCode::kDeadlineExceeded) return r;
      if (latest_->load() > epoch_) {
        return Aborted("epoch " + std::to_string(epoch_) + " was superseded during bootstrap");
      }
      if (left <= Ms(200)) return r;
    }
  }
  Result<int64_t> Add(std::string_view key, int64_t delta) override {
    return base_->Add(key, delta);
  }
  Result<bool> Check(std::string_view key) override { return base_->Check(key); }

 private:
  std::shared_ptr<Store> base_;
  const std::atomic<uint64_t>* latest_;
  const uint64_t epoch_;
};

// grpc.health.v1 (proto/health.proto): the coordinator's job controller
// probes it. The server as a whole ("") is SERVING while the process runs;
// a hung process (SIGSTOP) lets probes run to their deadline, a dead one
// refuses them.
class HealthService final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* resp) override {
    if (!req->service().empty()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service '" + req->service() +
                                                           "'; this worker serves only \"\"");
    }
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

// The worker's health server on an ephemeral port of every interface.
class HealthServer {
 public:
  // Unavailable when no port can be bound.
  static Result<std::unique_ptr<HealthServer>> Start() {
    auto h = std::unique_ptr<HealthServer>(new HealthServer());
    grpc::ServerBuilder b;
    b.AddListeningPort("0.0.0.0:0", grpc::InsecureServerCredentials(), &h->port_);
    b.RegisterService(&h->service_);
    h->server_ = b.BuildAndStart();
    if (!h->server_ || h->port_ == 0) {
      return Unavailable("cannot start the worker's health server on an ephemeral port");
    }
    return h;
  }
  ~HealthServer() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + kHealthShutdownGrace);
  }
  int port() const { return port_; }

 private:
  static constexpr Ms kHealthShutdownGrace{100};
  HealthServer() = default;
  HealthService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

// Heartbeats the member and follows the job's epoch, on its own thread and
// coordinator client; every kStepReportEveryHeartbeats heartbeats it also
// writes the last completed step (StepKey) when it moved. A heartbeat
// refused because the member was evicted (the controller's breaker opened
// while this process was hung or cut off) joins again, so the member can be
// taken back at a later epoch. Stops in the destructor.
class Heartbeat {
 public:
  Heartbeat(coordinator::ClientOptions co, std::string job, std::string member,
            std::string address, const std::atomic<int64_t>* step)
      : co_(std::move(co)),
        job_(std::move(job)),
        member_(std::move(member)),
        address_(std::move(address)),
        step_(step) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  const std::atomic<uint64_t>& latest_epoch() const { return latest_; }

 private:
  void Loop() {
    auto client = coordinator::Client::Create(co_);
    if (!client.ok()) return;
    std::unique_lock<std::mutex> l(mu_);
    int64_t reported = -1;
    for (uint64_t beat = 0; !stop_; ++beat) {
      l.unlock();
      auto job = (*client)->GetJob();
      if (job.ok()) {
        latest_.store(job->epoch);
        Status hb = (*client)->Heartbeat(member_, job->epoch);
        if (coordinator::RefusalOf(hb) == coordinator::Refusal::kMustJoinAgain) {
          COHORT_LOG_WARN("member {}: {}; joining again", member_, hb.message());
          (void)(*client)->Join(member_, address_, job->epoch);
        }
      }
      const int64_t step = step_->load();
      if (beat % kStepReportEveryHeartbeats == 0 && step != reported &&
          (*client)->Put(StepKey(job_, member_), std::to_string(step)).ok()) {
        reported = step;
      }
      l.lock();
      cv_.wait_for(l, kHeartbeatInterval, [this] { return stop_; });
    }
  }
  coordinator::ClientOptions co_;
  std::string job_, member_, address_;
  const std::atomic<int64_t>* step_;
  std::atomic<uint64_t> latest_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

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

// Broadcasts `state` from `root` (its holder) so every rank has it.
Status BroadcastState(Communicator& comm, LoadedCheckpoint* state, int root) {
  int64_t counts[2] = {state->layout.step, state->layout.optimizer_steps};
  COHORT_RETURN_IF_ERROR(comm.Broadcast(counts, 2, DType::kI64, root));
  state->layout.step = counts[0];
  state->layout.optimizer_steps = counts[1];
  COHORT_RETURN_IF_ERROR(
      comm.Broadcast(state->params.data(), state->params.size(), DType::kF32, root));
  for (auto& [name, v] : state->optim) {  // std::map: the same order on every rank
    COHORT_RETURN_IF_ERROR(comm.Broadcast(v.data(), v.size(), DType::kF32, root));
  }
  return Status::Ok();
}

// GlooCommunicator::Create on a helper thread, abandoned when the job moves
// past `epoch` meanwhile: Gloo's connect to a peer that died during the
// bootstrap was seen to block 25 s (its own retries), far past the
// collective timeout, and cannot be interrupted. An abandoned bootstrap ends
// by itself (it fails once the dead peer's connect times out) and frees what
// it built on its thread.
Result<std::unique_ptr<GlooCommunicator>> BootstrapGloo(std::shared_ptr<Store> store, int rank,
                                                        int world, const GlooOptions& go,
                                                        const std::atomic<uint64_t>& latest,
                                                        uint64_t epoch) {
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;  // guarded by mu
    Result<std::unique_ptr<GlooCommunicator>> result =
        Internal("bootstrap did not finish");  // guarded by mu
  };
  auto p = std::make_shared<Pending>();
  std::thread([p, store, rank, world, go] {
    auto r = GlooCommunicator::Create(store, rank, world, go);
    std::lock_guard<std::mutex> l(p->mu);
    p->result = std::move(r);
    p->done = true;
    p->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> l(p->mu);
  while (!p->done) {
    p->cv.wait_for(l, kHeartbeatInterval);
    if (!p->done && latest.load() > epoch) {
      return Aborted("epoch " + std::to_string(epoch) +
                     " was superseded during the gloo bootstrap");
    }
  }
  return std::move(p->result);
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

class ElasticWorker {
 public:
  ElasticWorker(const TrainOptions& opt, ElasticEnv env) : opt_(opt), env_(std::move(env)) {}
  Status Run();

 private:
  Status Setup();
  // Waits for an epoch after `after` that lists this member. nullopt: the
  // job finished without this worker.
  Result<std::optional<coordinator::JobInfo>> WaitForEpoch(uint64_t after);
  // One epoch: build, agree on the state, train. OK when the job's steps are
  // done; a non-fatal error ends the epoch.
  Status RunEpoch(const coordinator::JobInfo& job, int rank);
  void WriteSummary(const TrainSummary& s, uint64_t epoch, int rank, int world);

  const TrainOptions& opt_;
  ElasticEnv env_;
  Config config_;
  coordinator::ClientOptions co_;
  std::unique_ptr<coordinator::Client> client_;
  std::unique_ptr<HealthServer> health_;
  std::string host_;  // the advertised host: health server and Gloo listen for peers there
  std::unique_ptr<Heartbeat> heartbeat_;
  std::atomic<int64_t> last_step_{0};  // the last step this worker completed (heartbeat reads it)
  std::optional<LoadedCheckpoint> snapshot_;  // the newest state this worker holds
  std::map<int64_t, double> losses_;          // global step -> loss (a redone step overwrites)
  double initial_loss_ = -1;
  int64_t samples_seen_ = 0, steps_run_ = 0, steps_redone_ = 0, max_step_ = 0;
  std::vector<Recovery> recoveries_;
  std::vector<EpochRecord> epoch_log_;
  int64_t start_batch_per_rank_ = 0;  // the per-rank batch at --nproc ranks
  int64_t checkpoints_committed_ = 0;  // through the coordinator, while this worker was rank 0
  std::optional<Recovery> recovering_;  // set between a failed epoch and the next completed step
  int epochs_joined_ = 0;
  uint64_t joined_epoch_ = 0;  // the job's epoch when this worker joined
  double train_start_ = 0;
  std::unique_ptr<WorkerMetrics> metrics_;                 // with a metrics port
  std::unique_ptr<metrics::MetricsServer> metrics_server_;  // reads metrics_: declared after it
};

double NowS() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Status ElasticWorker::Setup() {
  COHORT_ASSIGN_OR_RETURN(config_, LoadConfigFile(opt_.config_path));
  if (opt_.steps < -1) return InvalidArgument("--steps must be >= 0");
  if (opt_.steps >= 0) config_.train.steps = opt_.steps;
  if (!opt_.checkpoint_dir.empty()) config_.checkpoint.dir = opt_.checkpoint_dir;
  if (opt_.checkpoint_every >= 0) config_.checkpoint.every = opt_.checkpoint_every;
  if (!opt_.device.empty()) config_.train.device = opt_.device;
  if (config_.train.device == "cuda") {
    return InvalidArgument("config " + config_.source +
                           ": elastic training (cohort launch) runs on the CPU over gloo for now; train.device "
                           "cuda needs an mpirun job (cohort train under mpirun, NCCL between the GPUs)");
  }
  config_.train.device = "cpu";  // auto: the CPU, as above
  if (config_.parallel.tensor != 1) {
    return InvalidArgument(
        "config " + config_.source +
        ": elastic training (cohort launch) supports data parallelism only (ZeRO 0 or 1) for "
        "now; set parallel.tensor 1");
  }
  if (config_.train.global_batch > 0) {  // the per-rank batch is what an elastic job keeps
    if (config_.train.global_batch % env_.nproc != 0) {
      return InvalidArgument("config " + config_.source + ": train.global_batch " +
                             std::to_string(config_.train.global_batch) +
                             " does not divide over --nproc " + std::to_string(env_.nproc));
    }
    config_.train.batch_per_rank = config_.train.global_batch / env_.nproc;
    config_.train.global_batch = 0;
  }
  // The Prometheus endpoint: the launcher's port for this slot, else this
  // command's --metrics-port + the slot.
  int metrics_port = env_.metrics_port;
  if (metrics_port < 0 && opt_.metrics_port != kMetricsOff) {
    COHORT_ASSIGN_OR_RETURN(metrics_port, SlotMetricsPort(opt_.metrics_port, env_.local_rank));
  }
  if (metrics_port >= 0) {
    metrics_ = std::make_unique<WorkerMetrics>();
    COHORT_ASSIGN_OR_RETURN(
        metrics_server_,
        ServeMetrics(&metrics_->registry(),
                     env_.metrics_address.empty() ? opt_.metrics_address : env_.metrics_address, metrics_port,
                     "cohort train: member " + env_.worker));
  }
  start_batch_per_rank_ = config_.train.batch_per_rank;
  COHORT_ASSIGN_OR_RETURN(std::string token, coordinator::ReadTokenFile(env_.token_file));
  COHORT_ASSIGN_OR_RETURN(co_.endpoints, coordinator::ParseEndpoints(env_.coordinator));
  co_.token = token;
  co_.deadline = Ms(10000);
  COHORT_ASSIGN_OR_RETURN(client_, coordinator::Client::Create(co_));
  // Checkpoints the coordinator committed are read at each epoch start
  // (RunEpoch), not here: a newer in-memory copy on any rank wins over them.
  // Join at the job's current epoch (a commit in between makes it stale: retry).
  COHORT_ASSIGN_OR_RETURN(health_, HealthServer::Start());
  if (const char* a = std::getenv(kEnvAdvertiseHost); a != nullptr && *a != '\0') {
    host_ = a;
  } else {
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    host_ = name;
  }
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

Result<std::optional<coordinator::JobInfo>> ElasticWorker::WaitForEpoch(uint64_t after) {
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

Status ElasticWorker::RunEpoch(const coordinator::JobInfo& job, int rank) {
  const uint64_t epoch = job.epoch;
  const int world = static_cast<int>(job.ranks.size());
  const bool lead = rank == 0;
  const std::string prefix = coordinator::EpochStorePrefix(env_.job, epoch);
  COHORT_ASSIGN_OR_RETURN(auto cstore, coordinator::CoordinatorStore::Create(co_, prefix));
  auto store = std::make_shared<EpochStore>(cstore, &heartbeat_->latest_epoch(), epoch);
  GlooOptions go;
  go.prefix = "gloo";
  go.hostname = host_;  // peers on other hosts must reach this rank
  go.timeout = env_.collective_timeout;
  COHORT_ASSIGN_OR_RETURN(auto comm,
                          BootstrapGloo(store, rank, world, go, heartbeat_->latest_epoch(), epoch));
  COHORT_ASSIGN_OR_RETURN(auto self, comm->SplitGroup(rank, 0));
  ParallelGroups groups{comm.get(), comm.get(), self.get()};
  // The resize policy: this epoch's batch and learning rate.
  COHORT_ASSIGN_OR_RETURN(ResizeDecision resize,
                          PlanResize(config_.elastic, start_batch_per_rank_, env_.nproc, world,
                                     config_.optimizer.lr));
  if (resize.rounded && lead) {
    COHORT_LOG_WARN("elastic.batch global: {} does not divide over {} ranks; {} per rank ({} global)",
                    start_batch_per_rank_ * env_.nproc, world, resize.batch_per_rank,
                    resize.global_batch);
  }
  Config epoch_config = config_;
  epoch_config.train.batch_per_rank = resize.batch_per_rank;
  epoch_config.optimizer.lr = static_cast<float>(resize.lr);
  // The policy scales the whole schedule: its floor with its peak, so a
  // cosine decay still falls from the (scaled) peak to the (scaled) floor.
  epoch_config.train.lr_schedule.min_lr =
      static_cast<float>(config_.train.lr_schedule.min_lr * resize.lr_scale);
  COHORT_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(epoch_config, groups));
  ++epochs_joined_;
  if (metrics_) {
    metrics_->SetLayout(rank, world, epoch);
    metrics_->OnTrainerStart();
    trainer->set_step_observer([this](const StepStats& st) {
      if (recovering_) metrics_->OnRecovery();  // the first step after a failure (the step hook records it)
      metrics_->OnStep(st);
    });
  }
  std::unique_ptr<CoordinatorCommitter> committer;
  if (lead && !config_.checkpoint.dir.empty()) {
    COHORT_ASSIGN_OR_RETURN(committer, CoordinatorCommitter::Create(co_, env_.job, epoch, &checkpoints_committed_));
    trainer->set_checkpoint_committer(committer.get());
  }

  // The newest state any rank holds, from the lowest rank holding it; rank 0
  // first loads the coordinator's newest committed checkpoint when it is
  // newer than all of them.
  int64_t mine = snapshot_ ? snapshot_->layout.step : -1;
  int64_t newest = mine;
  COHORT_RETURN_IF_ERROR(comm->AllReduce(&mine, &newest, 1, DType::kI64, ReduceOp::kMax));
  int64_t loaded_step = -1;  // rank 0: the committed checkpoint it loaded
  int64_t committed_step = 0;  // rank 0: the newest step the coordinator committed
  if (lead && !config_.checkpoint.dir.empty()) {
    // A failure here only costs the checkpoint: the copies in memory remain.
    auto listed = ListCommittedCheckpoints(*client_, env_.job);
    if (!listed.ok()) COHORT_LOG_WARN("cannot list committed checkpoints: {}", listed.status().message());
    std::vector<CommittedCheckpoint> committed = listed.ok() ? *listed : std::vector<CommittedCheckpoint>{};
    for (const auto& c : committed) committed_step = std::max(committed_step, c.step);
    std::erase_if(committed, [&](const CommittedCheckpoint& c) { return c.step <= newest || opt_.no_resume; });
    if (!committed.empty()) {
      std::vector<std::string> warnings;
      auto ck = LoadNewestCommitted(committed, &warnings);
      for (const auto& w : warnings) COHORT_LOG_WARN("{}", w);
      if (ck.ok()) {
        std::printf("cohort train: epoch %llu: restoring the coordinator-committed checkpoint at step %lld\n",
                    static_cast<unsigned long long>(epoch), static_cast<long long>(ck->layout.step));
        std::fflush(stdout);
        mine = loaded_step = ck->layout.step;
        snapshot_ = std::move(*ck);
      } else {
        COHORT_LOG_WARN("no committed checkpoint newer than step {} loads: {}", newest,
                        ck.status().message());
      }
    }
  }
  int64_t from_lead[2] = {loaded_step, committed_step};
  COHORT_RETURN_IF_ERROR(comm->Broadcast(from_lead, 2, DType::kI64, 0));
  loaded_step = from_lead[0];
  // Steps redone after a recovery must not rewrite a committed checkpoint.
  trainer->set_checkpoint_floor(from_lead[1]);
  COHORT_RETURN_IF_ERROR(comm->AllReduce(&mine, &newest, 1, DType::kI64, ReduceOp::kMax));
  // Rank 0 loaded a checkpoint only when it beat every copy: then it is the newest state.
  std::string restored_from = loaded_step >= 0 ? "checkpoint step " + std::to_string(loaded_step) : "snapshot";
  if (newest >= 0) {
    const int64_t candidate = mine == newest ? rank : INT_MAX;
    int64_t root = candidate;
    COHORT_RETURN_IF_ERROR(comm->AllReduce(&candidate, &root, 1, DType::kI64, ReduceOp::kMin));
    LoadedCheckpoint state;
    if (rank == root) {
      state = *snapshot_;
    } else {
      state = trainer->EmptyState();  // the shapes to receive into
    }
    COHORT_RETURN_IF_ERROR(BroadcastState(*comm, &state, static_cast<int>(root)));
    COHORT_RETURN_IF_ERROR(trainer->Restore(state));
    snapshot_ = std::move(state);
  } else {
    restored_from = "start";
    COHORT_ASSIGN_OR_RETURN(auto state, trainer->CaptureState());
    snapshot_ = std::move(state);
  }
  const int64_t start = trainer->step();
  epoch_log_.push_back({epoch, world, trainer->batch_per_rank(), trainer->batch_per_rank() * world, resize.lr,
                        start, restored_from});
  if (start < max_step_) steps_redone_ += max_step_ - start;
  const int64_t total = config_.train.steps;
  const int64_t global_batch = trainer->batch_per_rank() * world;
  if (lead) {
    std::printf(
        "cohort train: epoch %llu: %d rank%s (gloo), batch %lld/rank (%lld global), lr %g, from step %lld "
        "of %lld\n",
        static_cast<unsigned long long>(epoch), world, world == 1 ? "" : "s",
        static_cast<long long>(trainer->batch_per_rank()), static_cast<long long>(global_batch),
        resize.lr, static_cast<long long>(start), static_cast<long long>(total));
    std::fflush(stdout);
  }
  const auto& latest = heartbeat_->latest_epoch();
  bool first_step = true;
  trainer->set_step_hook([&](int64_t step, double loss) -> Status {
    if (initial_loss_ < 0 && step == 1) initial_loss_ = loss;
    losses_[step] = loss;
    samples_seen_ += global_batch;
    ++steps_run_;
    max_step_ = std::max(max_step_, step);
    last_step_.store(step);
    if (first_step) {
      first_step = false;
      // Best effort: only the launcher's recovery figures read it.
      if (lead) (void)client_->Put(ResumedKey(env_.job, epoch), std::to_string(WallMs()));
    }
    if (recovering_) {
      recovering_->epoch = epoch;
      recovering_->resumed_at_ms = WallMs();
      recoveries_.push_back(*recovering_);
      recovering_.reset();
    }
    if (step % env_.snapshot_every == 0) {
      COHORT_ASSIGN_OR_RETURN(auto state, trainer->CaptureState());
      snapshot_ = std::move(state);
    }
    if (step < total && latest.load() > epoch) {
      return Aborted("epoch " + std::to_string(latest.load()) + " committed (membership changed)");
    }
    return Status::Ok();
  });
  auto report = [&](const StepReport& r) {
    if (!lead) return;
    std::printf(
        "step %6lld/%-6lld loss %8.4f  %9.0f samples/s  %7.2f ms/step  all-reduce %4.1f%%%s\n",
        static_cast<long long>(start + r.step), static_cast<long long>(total), r.loss,
        r.samples_per_s, r.step_ms, 100.0 * r.allreduce_share, ProgressSuffix(config_, r).c_str());
    std::fflush(stdout);
  };
  COHORT_ASSIGN_OR_RETURN(TrainSummary s,
                          trainer->Run(std::max<int64_t>(0, total - start), report));
  if (metrics_) metrics_->OnRunEnd(s);
  Status save;
  if (!opt_.save_params.empty() && lead) {
    auto full = trainer->FullParams();
    if (!full.ok()) {
      save = full.status();
    } else {
      save = WriteParams(opt_.save_params, *full, config_, total, world);
    }
  }
  COHORT_RETURN_IF_ERROR(save);
  WriteSummary(s, epoch, rank, world);
  return Status::Ok();
}

void ElasticWorker::WriteSummary(const TrainSummary& s, uint64_t epoch, int rank, int world) {
  const int64_t total = config_.train.steps;
  double tail = 0;
  int n = 0;
  for (auto it = losses_.rbegin(); it != losses_.rend() && n < 10; ++it, ++n) tail += it->second;
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
  const double wall = NowS() - train_start_;
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
                      {"initial_loss", initial_loss_},
                      {"final_loss", n > 0 ? tail / n : 0.0},
                      {"last_loss", s.last_loss},
                      {"loss_ratio", initial_loss_ > 0 && n > 0 ? tail / n / initial_loss_ : 0.0},
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
  if (env_.summary_file.empty()) {
    if (rank == 0) {
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
    return;
  }
  const std::string tmp = env_.summary_file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << j.dump() << "\n";
  }
  std::rename(tmp.c_str(), env_.summary_file.c_str());
}

Status ElasticWorker::Run() {
  COHORT_RETURN_IF_ERROR(Setup());
  train_start_ = NowS();
  // An epoch committed before this process joined cannot mean it, even when
  // it lists this member id (a job restarted against the same coordinator
  // data reuses the ids of its previous run).
  uint64_t after = joined_epoch_;
  for (;;) {
    COHORT_ASSIGN_OR_RETURN(auto job, WaitForEpoch(after));
    if (!job) {
      COHORT_LOG_WARN("member {}: the job finished while it waited for an epoch", env_.worker);
      return Status::Ok();
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
    if (!recovering_) recovering_ = Recovery{0, st.message(), WallMs(), 0};
    (void)client_->Put(ReformKey(env_.job, job->epoch), env_.worker);
    after = job->epoch;
  }
  // No Leave: a member leaving would change the membership under the peers
  // still finishing their last step; the launcher sees the exit instead.
  heartbeat_.reset();
  return Status::Ok();
}

}  // namespace

int RunElasticTrain(const TrainOptions& opt, const ElasticEnv& env) {
  InitLogging(env.worker,
              opt.verbose ? LogLevel::kInfo : ParseLogLevel(opt.log_level, LogLevel::kWarn));
  // Die with the launcher rather than train on as an orphan.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const char* env_threads = std::getenv("OPENBLAS_NUM_THREADS");
  int threads = opt.threads;
  if (threads == 0 && env_threads == nullptr) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / env.nproc);
  }
  if (threads > 0) kernels::SetBlasThreads(threads);
  ElasticWorker w(opt, env);
  Status st = w.Run();
  if (!st.ok()) {
    std::fprintf(stderr, "cohort train: error: member %s: %s\n", env.worker.c_str(),
                 st.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace cohort::tools
