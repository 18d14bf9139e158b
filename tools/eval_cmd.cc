#include "tools/eval_cmd.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "collectives/mpi/mpi_communicator.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/trainer.h"

namespace cohort::tools {
namespace {

// The config to evaluate with: the file given, or the one the checkpoint
// kept. It evaluates on however many ranks run it, as plain data parallelism.
Result<Config> EvalConfig(const EvalOptions& opt, const LoadedCheckpoint& ck, int world) {
  Config c;
  if (!opt.config_path.empty()) {
    COHORT_ASSIGN_OR_RETURN(c, LoadConfigFile(opt.config_path));
  } else if (!ck.layout.config_yaml.empty()) {
    COHORT_ASSIGN_OR_RETURN(
        c, ParseConfig(ck.layout.config_yaml,
                       CheckpointStepDir(opt.checkpoint, ck.layout.step) + " (its config)"));
  } else {
    return InvalidArgument("the checkpoint at step " + std::to_string(ck.layout.step) + " in " +
                           opt.checkpoint +
                           " keeps no config (written before configs were kept); pass --config");
  }
  if (c.data.source == DataSource::kSynthetic || c.data.source == DataSource::kShards) {
    return InvalidArgument(
        "config " + c.source + " trains on " +
        (c.data.source == DataSource::kSynthetic ? "synthetic" : "shard") +
        " data, which has no held-out split; cohort eval needs data.source idx or tokens");
  }
  c.parallel = {};
  c.checkpoint = {};
  c.train.eval_every = 1;  // opens the held-out split
  c.train.precision = DType::kF32;
  if (c.train.global_batch > 0 && c.train.global_batch % world != 0) {
    c.train.batch_per_rank = std::max<int64_t>(1, c.train.global_batch / world);
    c.train.global_batch = 0;
  }
  return c;
}

Status Eval(const EvalOptions& opt, MpiCommunicator& comm) {
  const bool lead = comm.rank() == 0;
  std::vector<std::string> warnings;
  auto ck = LoadLatestCheckpoint(opt.checkpoint, &warnings);
  Result<Config> config = ck.ok() ? EvalConfig(opt, *ck, comm.size()) : Result<Config>(ck.status());
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, config.status()));
  if (lead) {
    for (const auto& w : warnings) std::fprintf(stderr, "cohort eval: warning: %s\n", w.c_str());
  }
  // Plain data parallelism: every rank its own tensor group of one.
  COHORT_ASSIGN_OR_RETURN(auto solo, comm.Split(comm.rank(), 0));
  ParallelGroups groups{&comm, &comm, solo.get()};
  COHORT_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(*config, groups));
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, trainer->Restore(*ck)));
  COHORT_ASSIGN_OR_RETURN(EvalResult r, trainer->Evaluate());
  if (!lead) return Status::Ok();
  const int64_t step = ck->layout.step;
  if (opt.json) {
    nlohmann::json j = {{"checkpoint", CheckpointStepDir(opt.checkpoint, step)},
                        {"step", step},
                        {"model", DescribeModel(config->model)},
                        {"samples", r.samples},
                        {"loss", r.loss},
                        {"ranks", comm.size()}};
    if (r.accuracy >= 0) {
      j["accuracy"] = r.accuracy;
      nlohmann::json rows = nlohmann::json::array();
      for (int32_t t = 0; t < r.classes; ++t) {
        rows.push_back(std::vector<int64_t>(r.confusion.begin() + t * r.classes,
                                            r.confusion.begin() + (t + 1) * r.classes));
      }
      j["confusion"] = rows;
    }
    std::printf("%s\n", j.dump().c_str());
    return Status::Ok();
  }
  std::printf("%s at step %lld (%s), %lld samples on %d rank%s\n",
              CheckpointStepDir(opt.checkpoint, step).c_str(), static_cast<long long>(step),
              DescribeModel(config->model).c_str(), static_cast<long long>(r.samples), comm.size(),
              comm.size() == 1 ? "" : "s");
  if (r.accuracy < 0) {
    std::printf("validation loss %.4f nats (%.4f bits per token)\n", r.loss,
                r.loss / std::log(2.0));
    return Status::Ok();
  }
  std::printf("accuracy %.2f%%, loss %.4f\n\n%5s %7s %7s %8s  %s\n", 100.0 * r.accuracy, r.loss,
              "class", "samples", "right", "accuracy", "most often mistaken for");
  for (int32_t t = 0; t < r.classes; ++t) {
    const int64_t* row = r.confusion.data() + t * r.classes;
    int64_t total = 0, worst = -1;
    for (int32_t p = 0; p < r.classes; ++p) {
      total += row[p];
      if (p != t && (worst < 0 || row[p] > row[worst])) worst = p;
    }
    std::printf("%5d %7lld %7lld %7.2f%%  %lld (%lld)\n", t, static_cast<long long>(total),
                static_cast<long long>(row[t]),
                total > 0 ? 100.0 * static_cast<double>(row[t]) / total : 0.0,
                static_cast<long long>(worst), static_cast<long long>(worst >= 0 ? row[worst] : 0));
  }
  return Status::Ok();
}

}  // namespace

int RunEval(const EvalOptions& opt, int* argc, char*** argv) {
  Status st = MpiRuntime::Init(argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "cohort eval: error: %s\n", st.message().c_str());
    return 1;
  }
  int code = 0;
  {
    auto comm = MpiCommunicator::World();
    st = comm.ok() ? Eval(opt, **comm) : comm.status();
    if (!st.ok()) {
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      if (rank == 0) std::fprintf(stderr, "cohort eval: error: %s\n", st.message().c_str());
      code = 1;
    }
  }
  MpiRuntime::Finalize();
  return code;
}

}  // namespace cohort::tools
