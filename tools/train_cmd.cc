// `cohort train`: one worker of a data-parallel job. Under mpirun, rank and
// world come from MPI. Rank 0 alone writes to standard output: progress lines
// and, as the last line, one JSON summary. Other ranks write to standard error
// only when something is wrong (or with --verbose).

#include <cmath>
#include <fstream>
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "collectives/backends.h"
#include "core/clock.h"
#include "collectives/mpi/mpi_communicator.h"
#include "core/logging.h"
#include "kernels/cpu/kernels.h"
#include "runtime/checkpoint.h"
#include "runtime/compute.h"
#include "runtime/config.h"
#include "runtime/device_select.h"
#include "runtime/safetensors.h"
#include "runtime/trainer.h"
#include "tools/run_report.h"
#include "coordinator/client/client.h"
#include "coordinator/client/flags.h"
#include "tools/checkpoint_registry.h"
#include "tools/commands.h"
#include "tools/elastic.h"
#include "tools/metrics_cmd.h"

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
  if (n >= 1000000) std::snprintf(buf, sizeof(buf), "%.2fM", static_cast<double>(n) / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof(buf), "%.1fk", static_cast<double>(n) / 1e3);
  else std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(n));
  return buf;
}

// Runs the job; returns the error every rank agrees on, or OK. *stopped:
// the signal that ended it early (the same on every rank), or 0.
Status Train(const TrainOptions& opt, MpiCommunicator& comm, double wall_start, int* stopped) {
  const bool lead = comm.rank() == 0;
  Status local;
  Result<Config> config = LoadConfigFile(opt.config_path);
  if (!config.ok()) local = config.status();
  if (local.ok() && opt.steps < -1) local = InvalidArgument("--steps must be >= 0");
  if (local.ok() && opt.steps >= 0) config->train.steps = opt.steps;
  if (local.ok() && !opt.checkpoint_dir.empty()) config->checkpoint.dir = opt.checkpoint_dir;
  if (local.ok() && opt.checkpoint_every >= 0) config->checkpoint.every = opt.checkpoint_every;
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, local));

  // The Prometheus endpoint (--metrics-port P): each rank serves P + its local rank.
  std::unique_ptr<WorkerMetrics> wm;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (opt.metrics_port != kMetricsOff) {
    wm = std::make_unique<WorkerMetrics>();
    wm->SetLayout(comm.rank(), comm.size(), 0);
    Result<int> port = SlotMetricsPort(opt.metrics_port, LocalRank());
    Status served = port.status();
    if (port.ok()) {
      auto server = ServeMetrics(&wm->registry(), opt.metrics_address, *port,
                                 "cohort train: rank " + std::to_string(comm.rank()));
      served = server.status();
      if (server.ok()) metrics_server = std::move(server).value();
    }
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, served));
  }

  // Where to train, agreed over the world: the CPU, or each rank's GPU (by
  // local rank) with NCCL between them.
  const std::string device_setting = opt.device.empty() ? config->train.device : opt.device;
  COHORT_ASSIGN_OR_RETURN(Placement place, AgreePlacement(comm, device_setting, opt.backend));
  std::unique_ptr<Compute> gpu;
  if (place.device == DeviceKind::kCuda) {
    auto made = MakeCudaCompute(place.cuda_device);
    Status local_gpu = made.status();
    if (made.ok()) gpu = std::move(made).value();
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, local_gpu));
  }
  // Tensor groups are contiguous ranks; data groups stride across them. A
  // tensor size that does not divide the world is reported by Trainer::Create.
  const int tensor = comm.size() % config->parallel.tensor == 0 ? config->parallel.tensor : 1;
  COHORT_ASSIGN_OR_RETURN(auto tensor_mpi, comm.Split(comm.rank() / tensor, comm.rank()));
  COHORT_ASSIGN_OR_RETURN(auto data_mpi, comm.Split(comm.rank() % tensor, comm.rank()));
  // The groups run on the chosen backend; MPI stays underneath for
  // bootstrap and for the job-wide agreement steps.
  BackendOptions bo;
  bo.store_dir = opt.store_dir;
  bo.nccl_device = place.cuda_device;
  BackendSet backends(comm, bo);
  COHORT_ASSIGN_OR_RETURN(Communicator* tensor_comm,
                          backends.Make(place.backend, *tensor_mpi, "tensor-" + std::to_string(comm.rank() / tensor)));
  COHORT_ASSIGN_OR_RETURN(Communicator* data_comm,
                          backends.Make(place.backend, *data_mpi, "data-" + std::to_string(comm.rank() % tensor)));
  ParallelGroups groups{&comm, data_comm, tensor_comm};
  std::unique_ptr<Timeline> timeline;
  if (!opt.timeline.empty()) {
    COHORT_RETURN_IF_ERROR(comm.Barrier());  // a common time origin for ranks on one host
    timeline = std::make_unique<Timeline>(comm.rank(), MonotonicSeconds());
  }
  COHORT_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(*config, groups, timeline.get(), gpu.get()));
  const Config& c = *config;
  if (wm) {
    wm->OnTrainerStart();
    trainer->set_step_observer([&wm](const StepStats& st) { wm->OnStep(st); });
  }
  // Resume from the newest committed checkpoint, whatever layout wrote it.
  std::string resumed;
  if (!c.checkpoint.dir.empty() && !opt.no_resume) {
    std::vector<std::string> warnings;
    Status local_restore;
    int64_t step = -1;
    auto ck = LoadLatestCheckpoint(c.checkpoint.dir, &warnings);
    if (ck.ok()) {
      local_restore = trainer->Restore(*ck);
      step = ck->layout.step;
      resumed = "resumed from " + CheckpointStepDir(c.checkpoint.dir, step) + " (written by " +
                std::to_string(ck->layout.world_size) + " ranks: data " + std::to_string(ck->layout.data) +
                " x tensor " + std::to_string(ck->layout.tensor) + ", ZeRO-" + std::to_string(ck->layout.zero) + ")";
    } else if (ck.status().code() != StatusCode::kNotFound) {
      local_restore = ck.status();
    }
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, local_restore));
    int64_t lo = step, hi = step;
    COHORT_RETURN_IF_ERROR(comm.AllReduce(&step, &lo, 1, DType::kI64, ReduceOp::kMin));
    COHORT_RETURN_IF_ERROR(comm.AllReduce(&step, &hi, 1, DType::kI64, ReduceOp::kMax));
    if (lo != hi) {
      return DataLoss("ranks found different checkpoints in " + c.checkpoint.dir + " (steps " + std::to_string(lo) +
                      " and " + std::to_string(hi) + "); is the directory shared by every rank?");
    }
    if (lead) {
      for (const auto& w : warnings) std::fprintf(stderr, "cohort train: warning: %s\n", w.c_str());
    }
  }
  const int64_t to_run = std::max<int64_t>(0, c.train.steps - trainer->step());
  if (lead) {
    const std::string shape = DescribeModel(c.model);
    std::string layout;
    if (c.parallel.tensor > 1 || c.parallel.zero > 0) {
      layout = " = data " + std::to_string(data_comm->size()) + " x tensor " + std::to_string(tensor_comm->size());
      if (c.parallel.zero > 0) layout += ", ZeRO-" + std::to_string(c.parallel.zero);
    }
    std::string device = gpu ? gpu->Describe() : "cpu";
    if (device_setting == "auto") device += " [" + place.reason + "]";
    std::printf("cohort train: %d rank%s (%s%s) on %s, %s (%s params), batch %lld/data rank (%lld global), "
                "%lld steps, BLAS threads %d\n",
                comm.size(), comm.size() == 1 ? "" : "s", std::string(data_comm->backend()).c_str(), layout.c_str(),
                device.c_str(),
                shape.c_str(), HumanCount(trainer->model().full_num_params()).c_str(),
                static_cast<long long>(trainer->batch_per_rank()),
                static_cast<long long>(trainer->batch_per_rank() * data_comm->size()),
                static_cast<long long>(c.train.steps), kernels::BlasThreads());
    std::fflush(stdout);
  }
  // --history: one JSON line per progress point (rank 0), flushed as it goes.
  std::ofstream history;
  Status history_ok;
  if (lead && !opt.history.empty()) {
    history.open(opt.history, std::ios::trunc);
    if (!history) history_ok = IoError("cannot write --history file " + opt.history);
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, history_ok));
  const int64_t first_step = trainer->step();
  auto report = [&](const StepReport& r) {
    if (!lead) return;
    if (history.is_open()) {
      nlohmann::json h = {{"step", first_step + r.step}, {"loss", r.loss},         {"lr", r.lr},
                          {"samples_per_s", r.samples_per_s}, {"step_ms", r.step_ms}};
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
    std::printf("step %6lld/%-6lld loss %8.4f  %9.0f samples/s  %7.2f ms/step  all-reduce %4.1f%%%s\n",
                static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss,
                r.samples_per_s, r.step_ms, 100.0 * r.allreduce_share, ProgressSuffix(c, r).c_str());
    std::fflush(stdout);
  };
  if (lead && !resumed.empty()) {
    std::printf("%s at step %lld; %lld steps to go\n", resumed.c_str(), static_cast<long long>(trainer->step()),
                static_cast<long long>(to_run));
    std::fflush(stdout);
  }
  // A stop signal ends the run at the next step boundary on every rank: one
  // 8-byte all-reduce per step (about a microsecond under Open MPI).
  trainer->set_stop_check([&comm, stopped]() -> Result<bool> {
    int64_t local = g_stop_signal.load(), agreed = 0;
    COHORT_RETURN_IF_ERROR(comm.AllReduce(&local, &agreed, 1, DType::kI64, ReduceOp::kMax));
    *stopped = static_cast<int>(agreed);
    return agreed != 0;
  });
  COHORT_ASSIGN_OR_RETURN(TrainSummary s, trainer->Run(to_run, report));
  if (lead && s.stopped_early) {
    std::printf("stopped by %s after step %lld%s\n", strsignal(*stopped), static_cast<long long>(s.end_step),
                c.checkpoint.dir.empty() ? " (no checkpoint.dir: the progress is lost)"
                                         : ("; checkpoint committed in " + c.checkpoint.dir).c_str());
    std::fflush(stdout);
  }
  if (wm) wm->OnRunEnd(s);

  Status save;
  if (!opt.save_params.empty()) {
    auto full = trainer->FullParams();  // collective over the tensor group
    if (!full.ok()) {
      save = full.status();
    } else if (lead || opt.save_params.find(kRankPlaceholder) != std::string::npos) {
      // With {rank} in the path every rank writes its own copy (to check
      // that replicas agree); otherwise rank 0 alone writes.
      std::string path = opt.save_params;
      for (size_t at; (at = path.find(kRankPlaceholder)) != std::string::npos;) {
        path.replace(at, sizeof(kRankPlaceholder) - 1, std::to_string(comm.rank()));
      }
      save = WriteParams(path, *full, c, s.steps, s.world_size);
    }
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, save));
  if (timeline) COHORT_RETURN_IF_ERROR(timeline->WriteMerged(comm, opt.timeline));
  if (lead) {
    nlohmann::json j = {
        {"world_size", s.world_size}, {"backend", std::string(data_comm->backend())}, {"steps", s.steps},
        {"device", s.device},
        {"data_parallel", s.data_parallel}, {"tensor_parallel", s.tensor_parallel}, {"zero", s.zero},
        {"local_params", s.local_params}, {"tensor_comm_ms", s.tensor_comm_ms},
        {"global_batch", s.global_batch}, {"params", s.num_params},
        {"initial_loss", s.initial_loss}, {"final_loss", s.final_loss}, {"last_loss", s.last_loss},
        {"loss_ratio", s.initial_loss > 0 ? s.final_loss / s.initial_loss : 0.0},
        {"samples_per_s", s.samples_per_s}, {"train_s", s.train_s}, {"wall_s", MonotonicSeconds() - wall_start},
        {"step_ms", s.step_ms}, {"data_ms", s.data_ms}, {"forward_ms", s.forward_ms},
        {"backward_ms", s.backward_ms}, {"allreduce_ms", s.allreduce_ms},
        {"optimizer_ms", s.optimizer_ms}, {"allreduce_share", s.allreduce_share},
        {"allreduce_wait_ms", s.allreduce_wait_ms}, {"buckets", trainer->buckets().size()},
        {"overlap", c.train.overlap},
        {"compression", c.train.compression == DType::kBF16 ? "bf16" : c.train.compression == DType::kF16 ? "fp16" : "none"},
        {"precision", s.precision}, {"loss_scale", s.loss_scale}, {"skipped_steps", s.skipped_steps},
        {"optimizer_state_bytes", s.optimizer_state_bytes}, {"start_step", s.start_step},
        {"end_step", s.end_step}, {"stopped_early", s.stopped_early},
        {"stop_signal", s.stopped_early ? sigabbrev_np(*stopped) : ""},
        {"checkpoints_committed", s.checkpoints_committed},
        {"checkpoint_ms", s.checkpoint_ms}, {"checkpoints_written", s.checkpoints_written},
        {"checkpoint_write_ms", s.checkpoint_write_ms},
        {"blas_threads", kernels::BlasThreads()}, {"config_hash", std::to_string(c.Hash())}};
    AddRunFields(c, s, &j);
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  return Status::Ok();
}

}  // namespace

int RunTrain(const TrainOptions& opt, int* argc, char*** argv) {
  const double wall_start = MonotonicSeconds();
  if (Status m = CheckMetricsPort(opt.metrics_port); !m.ok()) {
    std::fprintf(stderr, "cohort train: error: %s\n", m.message().c_str());
    return 2;
  }
  // Started by `cohort launch` (or with its environment): elastic, no MPI.
  auto elastic = ElasticEnvFromEnvironment();
  if (!elastic.ok()) {
    std::fprintf(stderr, "cohort train: error: %s\n", elastic.status().message().c_str());
    return 2;
  }
  if (elastic->has_value()) {
    if (opt.backend != "auto" && opt.backend != "gloo") {
      std::fprintf(stderr, "cohort train: error: elastic training runs on gloo; --backend %s is not supported there\n",
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
  const char* env_threads = std::getenv("OPENBLAS_NUM_THREADS");
  int threads = opt.threads;
  if (threads == 0 && env_threads == nullptr) {
    auto layout = HostLayoutFromEnv();
    if (!layout.ok()) {
      std::fprintf(stderr, "cohort train: error: %s\n", layout.status().message().c_str());
      MpiRuntime::Finalize();
      return 2;
    }
    threads = DefaultBlasThreads(*layout, static_cast<int>(std::thread::hardware_concurrency()));
    COHORT_LOG_INFO("BLAS threads {} ({} local ranks from {}, {} CPUs per task)", threads, layout->local_ranks,
                    layout->source, layout->cpus_per_rank);
  }
  if (threads > 0) kernels::SetBlasThreads(threads);
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
  std::printf("{\"dir\": \"%s\", \"samples\": %lld, \"shards\": %d, \"bytes\": %lld}\n", opt.out_dir.c_str(),
              static_cast<long long>(opt.samples), opt.num_shards, static_cast<long long>(*r));
  return 0;
}

namespace {

// The coordinator's committed checkpoints, or nullopt when not asked.
Result<std::optional<std::vector<CommittedCheckpoint>>> AskCoordinator(const CkptCoordinatorOptions& c) {
  if (c.coordinator.empty()) return std::optional<std::vector<CommittedCheckpoint>>();
  if (c.token_file.empty()) return InvalidArgument("--coordinator needs --token-file");
  coordinator::ClientOptions co;
  COHORT_ASSIGN_OR_RETURN(co.endpoints, coordinator::ParseEndpoints(c.coordinator));
  COHORT_ASSIGN_OR_RETURN(co.token, coordinator::ReadTokenFile(c.token_file));
  COHORT_ASSIGN_OR_RETURN(auto client, coordinator::Client::Create(co));
  COHORT_ASSIGN_OR_RETURN(auto list, ListCommittedCheckpoints(*client, c.job));
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
    return *committed ? CoordinatorVerdict(**committed, c.path) : std::string("-");
  };
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& c : *all) {
      nlohmann::json e = {{"step", c.step}, {"path", c.path}, {"committed", c.committed}, {"bytes", c.bytes}};
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
  std::printf("%-12s %-10s %6s %6s %6s %5s %-9s %10s %-11s\n", "step", "state", "world", "data", "tensor", "zero",
              "optimizer", "KiB", "coordinator");
  for (const auto& c : *all) {
    if (c.committed) {
      std::printf("%-12lld %-10s %6d %6d %6d %5d %-9s %10lld %-11s\n", static_cast<long long>(c.step), "committed",
                  c.layout.world_size, c.layout.data, c.layout.tensor, c.layout.zero, c.layout.optimizer.c_str(),
                  static_cast<long long>(c.bytes / 1024), verdict(c).c_str());
    } else {
      std::printf("%-12lld %-10s %6s %6s %6s %5s %-9s %10lld %-11s\n", static_cast<long long>(c.step), "partial", "-",
                  "-", "-", "-", "-", static_cast<long long>(c.bytes / 1024), verdict(c).c_str());
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
    return *committed ? " (coordinator: " + CoordinatorVerdict(**committed, c.path) + ")" : std::string();
  };
  int bad = 0, good = 0;
  for (const auto& c : *all) {
    if (!c.committed) continue;
    auto ck = LoadCheckpoint(c.path);
    if (ck.ok()) {
      std::printf("ok       %s%s\n", c.path.c_str(), suffix(c).c_str());
      ++good;
    } else {
      std::printf("DAMAGED  %s%s: %s\n", c.path.c_str(), suffix(c).c_str(), ck.status().message().c_str());
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
