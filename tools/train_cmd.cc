// `cohort train`: one worker of a data-parallel job. Under mpirun, rank and
// world come from MPI. Rank 0 alone writes to standard output: progress lines
// and, as the last line, one JSON summary. Other ranks write to standard error
// only when something is wrong (or with --verbose). With the launcher's
// environment (runtime/elastic/env.h) it is an elastic worker instead
// (runtime/elastic/worker.h).

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "collectives/auto/auto_cache.h"
#include "collectives/backends.h"
#include "collectives/mpi/mpi_communicator.h"
#include "coordinator/client/client.h"
#include "coordinator/client/flags.h"
#include "core/clock.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "kernels/cpu/kernels.h"
#include "runtime/checkpoint.h"
#include "runtime/compute.h"
#include "runtime/config.h"
#include "runtime/device_select.h"
#include "runtime/elastic/committer.h"
#include "runtime/elastic/env.h"
#include "runtime/elastic/worker.h"
#include "runtime/run_report.h"
#include "runtime/timeline.h"
#include "runtime/trainer.h"
#include "runtime/worker_metrics.h"
#include "tools/commands.h"

namespace cohort::tools {
namespace {

// In --save-params, replaced by the rank: every rank writes its parameters.
constexpr char kRankPlaceholder[] = "{rank}";

int LocalRank() {
  auto info = LocalRankFromEnv();  // a malformed value is reported by AgreePlacement
  return info.ok() ? info->local_rank : 0;
}

// The signal that asked this process to stop (SIGTERM, SIGUSR1), or 0. Set
// by the handler; read between steps by the stop check, which agrees on it
// over the world so that every rank stops after the same step.
std::atomic<int> g_stop_signal{0};
void OnStopSignal(int signo) { g_stop_signal.store(signo); }

void CatchStopSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sa.sa_flags = SA_RESTART;  // MPI and socket calls in flight carry on
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGUSR1, &sa, nullptr);
}

std::string HumanCount(int64_t n) {
  char buf[32];
  if (n >= 1000000)
    std::snprintf(buf, sizeof(buf), "%.2fM", static_cast<double>(n) / 1e6);
  else if (n >= 1000)
    std::snprintf(buf, sizeof(buf), "%.1fk", static_cast<double>(n) / 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(n));
  return buf;
}

void PrintLine(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// The config file with the command's overrides, for both modes.
Result<Config> LoadTrainConfig(const TrainOptions& opt) {
  COHORT_ASSIGN_OR_RETURN(Config c, LoadConfigFile(opt.config_path));
  if (opt.steps < -1) return InvalidArgument("--steps must be >= 0");
  if (opt.steps >= 0) c.train.steps = opt.steps;
  if (!opt.checkpoint_dir.empty()) c.checkpoint.dir = opt.checkpoint_dir;
  if (opt.checkpoint_every >= 0) c.checkpoint.every = opt.checkpoint_every;
  if (!opt.device.empty()) c.train.device = opt.device;
  return c;
}

// What an mpirun job built: placement, groups, the trainer and its helpers.
struct MpiJob {
  Config config;
  Placement place;
  std::unique_ptr<Compute> gpu;
  std::unique_ptr<MpiCommunicator> tensor_mpi, data_mpi;
  std::unique_ptr<BackendSet> backends;
  Communicator* tensor_comm = nullptr;
  Communicator* data_comm = nullptr;
  std::unique_ptr<Timeline> timeline;
  std::unique_ptr<Trainer> trainer;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<metrics::MetricsServer> metrics_server;  // reads metrics: declared after it
  std::string resumed;  // "resumed from ..." when a checkpoint was restored
  LossLog losses;
};

// The Prometheus endpoint (--metrics-port P): each rank serves P + its local rank.
Status StartMetrics(const TrainOptions& opt, MpiCommunicator& comm, MpiJob* job) {
  if (opt.metrics_port == kMetricsOff) return Status::Ok();
  job->metrics = std::make_unique<WorkerMetrics>();
  job->metrics->SetLayout(comm.rank(), comm.size(), 0);
  Result<int> port = SlotMetricsPort(opt.metrics_port, LocalRank());
  Status served = port.status();
  if (port.ok()) {
    auto server = ServeMetrics(&job->metrics->registry(), opt.metrics_address, *port,
                               "cohort train: rank " + std::to_string(comm.rank()));
    served = server.status();
    if (server.ok()) job->metrics_server = std::move(server).value();
  }
  return AgreeOnStatus(comm, served);
}

// Where to train, agreed over the world (the CPU, or each rank's GPU by
// local rank with NCCL between them), and the data and tensor groups on the
// chosen backend; MPI stays underneath for bootstrap and for the job-wide
// agreement steps.
Status BuildGroups(const TrainOptions& opt, MpiCommunicator& comm, MpiJob* job) {
  COHORT_ASSIGN_OR_RETURN(job->place, AgreePlacement(comm, job->config.train.device, opt.backend));
  if (job->place.device == DeviceKind::kCuda) {
    auto made = MakeCudaCompute(job->place.cuda_device);
    Status local_gpu = made.status();
    if (made.ok()) job->gpu = std::move(made).value();
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, local_gpu));
  }
  // Tensor groups are contiguous ranks; data groups stride across them. A
  // tensor size that does not divide the world is reported by Trainer::Create.
  const int tensor =
      comm.size() % job->config.parallel.tensor == 0 ? job->config.parallel.tensor : 1;
  COHORT_ASSIGN_OR_RETURN(job->tensor_mpi, comm.Split(comm.rank() / tensor, comm.rank()));
  COHORT_ASSIGN_OR_RETURN(job->data_mpi, comm.Split(comm.rank() % tensor, comm.rank()));
  BackendOptions bo;
  bo.autos.cache_dir =
      DefaultCacheDir();  // auto's calibration cache (collectives/auto/auto_cache.h)
  bo.autos.recalibrate = opt.recalibrate;
  bo.store_dir = opt.store_dir;
  bo.nccl_device = job->place.cuda_device;
  job->backends = std::make_unique<BackendSet>(comm, bo);
  COHORT_ASSIGN_OR_RETURN(job->tensor_comm,
                          job->backends->Make(job->place.backend, *job->tensor_mpi,
                                              "tensor-" + std::to_string(comm.rank() / tensor)));
  COHORT_ASSIGN_OR_RETURN(job->data_comm,
                          job->backends->Make(job->place.backend, *job->data_mpi,
                                              "data-" + std::to_string(comm.rank() % tensor)));
  return Status::Ok();
}

// Resumes from the newest committed checkpoint, whatever layout wrote it.
Status Resume(const TrainOptions& opt, MpiCommunicator& comm, MpiJob* job) {
  const Config& c = job->config;
  if (c.checkpoint.dir.empty() || opt.no_resume) return Status::Ok();
  std::vector<std::string> warnings;
  Status local_restore;
  int64_t step = -1;
  auto ck = LoadLatestCheckpoint(c.checkpoint.dir, &warnings);
  if (ck.ok()) {
    local_restore = job->trainer->Restore(*ck);
    step = ck->layout.step;
    job->resumed = "resumed from " + CheckpointStepDir(c.checkpoint.dir, step) + " (written by " +
                   std::to_string(ck->layout.world_size) + " ranks: data " +
                   std::to_string(ck->layout.data) + " x tensor " +
                   std::to_string(ck->layout.tensor) + ", ZeRO-" + std::to_string(ck->layout.zero) +
                   ")";
  } else if (ck.status().code() != StatusCode::kNotFound) {
    local_restore = ck.status();
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, local_restore));
  int64_t lo = step, hi = step;
  COHORT_RETURN_IF_ERROR(comm.AllReduce(&step, &lo, 1, DType::kI64, ReduceOp::kMin));
  COHORT_RETURN_IF_ERROR(comm.AllReduce(&step, &hi, 1, DType::kI64, ReduceOp::kMax));
  if (lo != hi) {
    return DataLoss("ranks found different checkpoints in " + c.checkpoint.dir + " (steps " +
                    std::to_string(lo) + " and " + std::to_string(hi) +
                    "); is the directory shared by every rank?");
  }
  if (comm.rank() == 0) {
    for (const auto& w : warnings) std::fprintf(stderr, "cohort train: warning: %s\n", w.c_str());
  }
  return Status::Ok();
}

void PrintHeader(MpiCommunicator& comm, const MpiJob& job) {
  const Config& c = job.config;
  std::string layout;
  if (c.parallel.tensor > 1 || c.parallel.zero > 0) {
    layout = " = data " + std::to_string(job.data_comm->size()) + " x tensor " +
             std::to_string(job.tensor_comm->size());
    if (c.parallel.zero > 0) layout += ", ZeRO-" + std::to_string(c.parallel.zero);
  }
  std::string device = job.gpu ? job.gpu->Describe() : "cpu";
  if (c.train.device == "auto") device += " [" + job.place.reason + "]";
  const Trainer& t = *job.trainer;
  std::printf(
      "cohort train: %d rank%s (%s%s) on %s, %s (%s params), batch %lld/data rank (%lld global), "
      "%lld steps, BLAS threads %d\n",
      comm.size(), comm.size() == 1 ? "" : "s", std::string(job.data_comm->backend()).c_str(),
      layout.c_str(), device.c_str(), DescribeModel(c.model).c_str(),
      HumanCount(t.model().full_num_params()).c_str(), static_cast<long long>(t.batch_per_rank()),
      static_cast<long long>(t.batch_per_rank() * job.data_comm->size()),
      static_cast<long long>(c.train.steps), kernels::BlasThreads());
  std::fflush(stdout);
}

// --history: one JSON line per progress point (rank 0), flushed as it goes.
void WriteHistory(std::ofstream& history, int64_t step, const StepReport& r) {
  nlohmann::json h = {{"step", step},
                      {"loss", r.loss},
                      {"lr", r.lr},
                      {"samples_per_s", r.samples_per_s},
                      {"step_ms", r.step_ms}};
  if (r.grad_norm >= 0) h["grad_norm"] = r.grad_norm;
  if (r.eval_accuracy >= 0) {
    h["eval_loss"] = r.val_loss;
    h["eval_accuracy"] = r.eval_accuracy;
  } else if (r.val_loss >= 0) {
    h["val_loss"] = r.val_loss;
  }
  history << h.dump() << "\n";
  history.flush();
}

// --save-params: rank 0 writes the whole model; with {rank} in the path
// every rank writes its own copy (to check that replicas agree).
Status SaveParams(const TrainOptions& opt, MpiCommunicator& comm, MpiJob& job,
                  const TrainSummary& s) {
  Status save;
  if (!opt.save_params.empty()) {
    auto full = job.trainer->FullParams();  // collective over the tensor group
    if (!full.ok()) {
      save = full.status();
    } else if (comm.rank() == 0 || opt.save_params.find(kRankPlaceholder) != std::string::npos) {
      std::string path = opt.save_params;
      for (size_t at; (at = path.find(kRankPlaceholder)) != std::string::npos;) {
        path.replace(at, sizeof(kRankPlaceholder) - 1, std::to_string(comm.rank()));
      }
      save = WriteParams(path, *full, job.config, s.steps, s.world_size);
    }
  }
  return AgreeOnStatus(comm, save);
}

nlohmann::json Summary(const MpiJob& job, const TrainSummary& s, double wall_start, int stopped) {
  const Config& c = job.config;
  const double final_loss = job.losses.Final();
  nlohmann::json j = {{"world_size", s.world_size},
                      {"backend", std::string(job.data_comm->backend())},
                      {"steps", s.steps},
                      {"device", s.device},
                      {"data_parallel", s.data_parallel},
                      {"tensor_parallel", s.tensor_parallel},
                      {"zero", s.zero},
                      {"local_params", s.local_params},
                      {"tensor_comm_ms", s.tensor_comm_ms},
                      {"global_batch", s.global_batch},
                      {"params", s.num_params},
                      {"initial_loss", s.initial_loss},
                      {"final_loss", final_loss},
                      {"last_loss", s.last_loss},
                      {"loss_ratio", s.initial_loss > 0 ? final_loss / s.initial_loss : 0.0},
                      {"samples_per_s", s.samples_per_s},
                      {"train_s", s.train_s},
                      {"wall_s", MonotonicSeconds() - wall_start},
                      {"step_ms", s.step_ms},
                      {"data_ms", s.data_ms},
                      {"forward_ms", s.forward_ms},
                      {"backward_ms", s.backward_ms},
                      {"allreduce_ms", s.allreduce_ms},
                      {"optimizer_ms", s.optimizer_ms},
                      {"allreduce_share", s.allreduce_share},
                      {"allreduce_wait_ms", s.allreduce_wait_ms},
                      {"buckets", job.trainer->buckets().size()},
                      {"overlap", c.train.overlap},
                      {"compression", c.train.compression == DType::kBF16  ? "bf16"
                                      : c.train.compression == DType::kF16 ? "fp16"
                                                                           : "none"},
                      {"precision", s.precision},
                      {"loss_scale", s.loss_scale},
                      {"skipped_steps", s.skipped_steps},
                      {"optimizer_state_bytes", s.optimizer_state_bytes},
                      {"start_step", s.start_step},
                      {"end_step", s.end_step},
                      {"stopped_early", s.stopped_early},
                      {"stop_signal", s.stopped_early ? sigabbrev_np(stopped) : ""},
                      {"checkpoints_committed", s.checkpoints_committed},
                      {"checkpoint_ms", s.checkpoint_ms},
                      {"checkpoints_written", s.checkpoints_written},
                      {"checkpoint_write_ms", s.checkpoint_write_ms},
                      {"blas_threads", kernels::BlasThreads()},
                      {"config_hash", std::to_string(c.Hash())}};
  AddRunFields(c, s, &j);
  return j;
}

// Trains with the built job; returns the summary. *stopped: the signal that
// ended it early (the same on every rank), or 0.
Result<TrainSummary> RunSteps(const TrainOptions& opt, MpiCommunicator& comm, MpiJob& job,
                              int* stopped) {
  const bool lead = comm.rank() == 0;
  Trainer& trainer = *job.trainer;
  std::ofstream history;
  Status history_ok;
  if (lead && !opt.history.empty()) {
    history.open(opt.history, std::ios::trunc);
    if (!history) history_ok = IoError("cannot write --history file " + opt.history);
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, history_ok));
  const int64_t first_step = trainer.step();
  const int64_t to_run = std::max<int64_t>(0, job.config.train.steps - first_step);
  auto report = [&](const StepReport& r) {
    if (!lead) return;
    if (history.is_open()) WriteHistory(history, first_step + r.step, r);
    PrintLine(ProgressLine(job.config, r, r.step, r.total_steps));
  };
  if (lead && !job.resumed.empty()) {
    PrintLine(job.resumed + " at step " + std::to_string(first_step) + "; " +
              std::to_string(to_run) + " steps to go");
  }
  trainer.set_step_hook([&job](int64_t step, double loss) {
    job.losses.Record(step, loss);
    return Status::Ok();
  });
  // A stop signal ends the run at the next step boundary on every rank: one
  // 8-byte all-reduce per step (about a microsecond under Open MPI).
  trainer.set_stop_check([&comm, stopped]() -> Result<bool> {
    int64_t local = g_stop_signal.load(), agreed = 0;
    COHORT_RETURN_IF_ERROR(comm.AllReduce(&local, &agreed, 1, DType::kI64, ReduceOp::kMax));
    *stopped = static_cast<int>(agreed);
    return agreed != 0;
  });
  return trainer.Run(to_run, report);
}

// Runs the job; returns the error every rank agrees on, or OK. *stopped:
// the signal that ended it early (the same on every rank), or 0.
Status Train(const TrainOptions& opt, MpiCommunicator& comm, double wall_start, int* stopped) {
  const bool lead = comm.rank() == 0;
  MpiJob job;
  Result<Config> config = LoadTrainConfig(opt);
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, config.status()));
  job.config = std::move(config).value();
  COHORT_RETURN_IF_ERROR(StartMetrics(opt, comm, &job));
  COHORT_RETURN_IF_ERROR(BuildGroups(opt, comm, &job));
  ParallelGroups groups{&comm, job.data_comm, job.tensor_comm};
  if (!opt.timeline.empty()) {
    COHORT_RETURN_IF_ERROR(comm.Barrier());  // a common time origin for ranks on one host
    job.timeline = std::make_unique<Timeline>(comm.rank(), MonotonicSeconds());
  }
  COHORT_ASSIGN_OR_RETURN(job.trainer,
                          Trainer::Create(job.config, groups, job.timeline.get(), job.gpu.get()));
  if (job.metrics) {
    job.metrics->OnTrainerStart();
    job.trainer->set_step_observer([&job](const StepStats& st) { job.metrics->OnStep(st); });
  }
  COHORT_RETURN_IF_ERROR(Resume(opt, comm, &job));
  if (lead) PrintHeader(comm, job);
  COHORT_ASSIGN_OR_RETURN(TrainSummary s, RunSteps(opt, comm, job, stopped));
  const Config& c = job.config;
  if (lead && s.stopped_early) {
    PrintLine("stopped by " + std::string(strsignal(*stopped)) + " after step " +
              std::to_string(s.end_step) +
              (c.checkpoint.dir.empty() ? " (no checkpoint.dir: the progress is lost)"
                                        : "; checkpoint committed in " + c.checkpoint.dir));
  }
  if (job.metrics) job.metrics->OnRunEnd(s);
  COHORT_RETURN_IF_ERROR(SaveParams(opt, comm, job, s));
  if (job.timeline) COHORT_RETURN_IF_ERROR(job.timeline->WriteMerged(comm, opt.timeline));
  if (lead) PrintLine(Summary(job, s, wall_start, *stopped).dump());
  return Status::Ok();
}

// Elastic mode: one worker of a `cohort launch` job (runtime/elastic/worker.h).
int RunElasticTrain(const TrainOptions& opt, const elastic::ElasticEnv& env) {
  InitLogging(env.worker,
              opt.verbose ? LogLevel::kInfo : ParseLogLevel(opt.log_level, LogLevel::kWarn));
  // Die with the launcher rather than train on as an orphan.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const auto fail = [&](const Status& st) {
    std::fprintf(stderr, "cohort train: error: member %s: %s\n", env.worker.c_str(),
                 st.message().c_str());
    return 1;
  };
  if (auto threads = ApplyBlasThreadRule(opt.threads); !threads.ok()) return fail(threads.status());
  elastic::WorkerOptions wo;
  Result<Config> config = LoadTrainConfig(opt);
  if (!config.ok()) return fail(config.status());
  wo.config = std::move(config).value();
  wo.no_resume = opt.no_resume;
  wo.save_params = opt.save_params;
  wo.metrics_port = opt.metrics_port;
  wo.metrics_address = opt.metrics_address;
  wo.print = PrintLine;
  auto worker = elastic::Worker::Create(std::move(wo), env);
  if (!worker.ok()) return fail(worker.status());
  auto summary = (*worker)->Run();
  if (!summary.ok()) return fail(summary.status());
  if (summary->empty()) return 0;  // the job finished while this worker waited for an epoch
  // The launcher reads the summary file; without one, rank 0 prints it.
  if (env.summary_file.empty()) {
    if (summary->value("rank", -1) == 0) PrintLine(summary->dump());
    return 0;
  }
  if (Status w = WriteFileAtomic(env.summary_file, summary->dump() + "\n"); !w.ok()) return fail(w);
  return 0;
}

}  // namespace

int RunTrain(const TrainOptions& opt, int* argc, char*** argv) {
  const double wall_start = MonotonicSeconds();
  if (Status m = CheckMetricsPort(opt.metrics_port); !m.ok()) {
    std::fprintf(stderr, "cohort train: error: %s\n", m.message().c_str());
    return 2;
  }
  // Started by `cohort launch` (or with its environment): elastic, no MPI.
  auto elastic = elastic::ElasticEnvFromEnvironment();
  if (!elastic.ok()) {
    std::fprintf(stderr, "cohort train: error: %s\n", elastic.status().message().c_str());
    return 2;
  }
  if (elastic->has_value()) {
    if (opt.backend != "auto" && opt.backend != "gloo") {
      std::fprintf(stderr,
                   "cohort train: error: elastic training runs on gloo; --backend %s is not "
                   "supported there\n",
                   opt.backend.c_str());
      return 2;
    }
    return RunElasticTrain(opt, **elastic);
  }
  if (Status b = CheckBackendName(opt.backend); !b.ok()) {
    std::fprintf(stderr, "cohort train: error: --backend: %s\n", b.message().c_str());
    return 2;
  }
  Status st = MpiRuntime::Init(argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "cohort train: error: %s\n", st.message().c_str());
    return 1;
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  InitLogging("rank " + std::to_string(rank),
              opt.verbose ? LogLevel::kInfo : ParseLogLevel(opt.log_level, LogLevel::kWarn));
  // BLAS threads: the CPUs Slurm gave each task, else the cores split among
  // the ranks on this host (mpirun's or srun's layout), unless told.
  if (auto threads = ApplyBlasThreadRule(opt.threads); !threads.ok()) {
    std::fprintf(stderr, "cohort train: error: %s\n", threads.status().message().c_str());
    MpiRuntime::Finalize();
    return 2;
  }
  CatchStopSignals();
  int code = 0;
  {
    auto comm = MpiCommunicator::World();
    int stopped = 0;
    if (!comm.ok()) {
      st = comm.status();
    } else {
      COHORT_LOG_INFO("rank {} of {} on pid {}", (*comm)->rank(), (*comm)->size(), ::getpid());
      st = Train(opt, **comm, wall_start, &stopped);
    }
    if (st.ok() && stopped != 0) code = kExitStoppedBySignal;
    if (!st.ok()) {
      // Every rank agreed on this error; rank 0 prints it once.
      if (rank == 0) std::fprintf(stderr, "cohort train: error: %s\n", st.message().c_str());
      code = 1;
    }
  }
  MpiRuntime::Finalize();
  return code;
}

int RunDataGen(const DataGenOptions& opt) {
  auto r = GenerateShards(opt, &std::cout);
  if (!r.ok()) {
    std::fprintf(stderr, "cohort data gen: error: %s\n", r.status().message().c_str());
    return 1;
  }
  std::printf("{\"dir\": \"%s\", \"samples\": %lld, \"shards\": %d, \"bytes\": %lld}\n",
              opt.out_dir.c_str(), static_cast<long long>(opt.samples), opt.num_shards,
              static_cast<long long>(*r));
  return 0;
}

namespace {

// The coordinator's committed checkpoints, or nullopt when not asked.
Result<std::optional<std::vector<CommittedCheckpoint>>> AskCoordinator(
    const CkptCoordinatorOptions& c) {
  if (c.coordinator.empty()) return std::optional<std::vector<CommittedCheckpoint>>();
  if (c.token_file.empty()) return InvalidArgument("--coordinator needs --token-file");
  coordinator::ClientOptions co;
  COHORT_ASSIGN_OR_RETURN(co.endpoints, coordinator::ParseEndpoints(c.coordinator));
  COHORT_ASSIGN_OR_RETURN(co.token, coordinator::ReadTokenFile(c.token_file));
  COHORT_ASSIGN_OR_RETURN(auto client, coordinator::Client::Create(co));
  COHORT_ASSIGN_OR_RETURN(auto list, elastic::ListCommittedCheckpoints(*client, c.job));
  return std::optional<std::vector<CommittedCheckpoint>>(std::move(list));
}

}  // namespace

int RunCkptInspect(const std::string& dir, bool json, const CkptCoordinatorOptions& coord) {
  auto all = ListCheckpoints(dir);
  if (!all.ok()) {
    std::fprintf(stderr, "cohort ckpt inspect: error: %s\n", all.status().message().c_str());
    return 1;
  }
  auto committed = AskCoordinator(coord);
  if (!committed.ok()) {
    std::fprintf(stderr, "cohort ckpt inspect: error: asking the coordinator: %s\n",
                 committed.status().message().c_str());
    return 1;
  }
  const auto verdict = [&](const CheckpointInfo& c) {
    return *committed ? elastic::CoordinatorVerdict(**committed, c.path) : std::string("-");
  };
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& c : *all) {
      nlohmann::json e = {
          {"step", c.step}, {"path", c.path}, {"committed", c.committed}, {"bytes", c.bytes}};
      if (*committed) e["coordinator"] = verdict(c);
      if (c.committed) {
        e["world_size"] = c.layout.world_size;
        e["data"] = c.layout.data;
        e["tensor"] = c.layout.tensor;
        e["zero"] = c.layout.zero;
        e["optimizer"] = c.layout.optimizer;
      }
      j.push_back(e);
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%-12s %-10s %6s %6s %6s %5s %-9s %10s %-11s\n", "step", "state", "world", "data",
              "tensor", "zero", "optimizer", "KiB", "coordinator");
  for (const auto& c : *all) {
    if (c.committed) {
      std::printf("%-12lld %-10s %6d %6d %6d %5d %-9s %10lld %-11s\n",
                  static_cast<long long>(c.step), "committed", c.layout.world_size, c.layout.data,
                  c.layout.tensor, c.layout.zero, c.layout.optimizer.c_str(),
                  static_cast<long long>(c.bytes / 1024), verdict(c).c_str());
    } else {
      std::printf("%-12lld %-10s %6s %6s %6s %5s %-9s %10lld %-11s\n",
                  static_cast<long long>(c.step), "partial", "-", "-", "-", "-", "-",
                  static_cast<long long>(c.bytes / 1024), verdict(c).c_str());
    }
  }
  return 0;
}

int RunCkptVerify(const std::string& dir, const CkptCoordinatorOptions& coord) {
  auto all = ListCheckpoints(dir);
  if (!all.ok()) {
    std::fprintf(stderr, "cohort ckpt verify: error: %s\n", all.status().message().c_str());
    return 1;
  }
  auto committed = AskCoordinator(coord);
  if (!committed.ok()) {
    std::fprintf(stderr, "cohort ckpt verify: error: asking the coordinator: %s\n",
                 committed.status().message().c_str());
    return 1;
  }
  const auto suffix = [&](const CheckpointInfo& c) {
    return *committed ? " (coordinator: " + elastic::CoordinatorVerdict(**committed, c.path) + ")"
                      : std::string();
  };
  int bad = 0, good = 0;
  for (const auto& c : *all) {
    if (!c.committed) continue;
    auto ck = LoadCheckpoint(c.path);
    if (ck.ok()) {
      std::printf("ok       %s%s\n", c.path.c_str(), suffix(c).c_str());
      ++good;
    } else {
      std::printf("DAMAGED  %s%s: %s\n", c.path.c_str(), suffix(c).c_str(),
                  ck.status().message().c_str());
      ++bad;
    }
  }
  std::printf("%d committed checkpoint(s) intact, %d damaged\n", good, bad);
  if (good == 0 && bad == 0) {
    std::fprintf(stderr, "cohort ckpt verify: error: no committed checkpoint in %s\n", dir.c_str());
    return 1;
  }
  return bad == 0 ? 0 : 1;
}

int RunDataVerify(const std::string& dir) {
  Status s = VerifyShards(dir);
  if (!s.ok()) {
    std::fprintf(stderr, "cohort data verify: error: %s\n", s.message().c_str());
    return 1;
  }
  std::printf("%s: all shards intact\n", dir.c_str());
  return 0;
}

}  // namespace cohort::tools
