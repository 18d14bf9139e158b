#include "runtime/trainer.h"

#include <chrono>
#include <deque>
#include <numeric>

namespace cohort {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Status ValidateLocal(const Config& config, int world, int rank, int64_t* batch,
                     std::unique_ptr<Dataset>* data, std::unique_ptr<Sampler>* sampler) {
  COHORT_ASSIGN_OR_RETURN(*batch, config.BatchPerRank(world));
  const int64_t inputs = config.model.layers.front();
  const int64_t classes = config.model.layers.back();
  if (classes < 2) return InvalidArgument("config " + config.source + ": the last of model.layers (classes) must be at least 2");
  if (config.data.source == DataSource::kSynthetic) {
    const int64_t global = *batch * world;
    if (config.data.samples < global) {
      return InvalidArgument("config " + config.source + ": data.samples " + std::to_string(config.data.samples) +
                             " is smaller than one global batch of " + std::to_string(global) +
                             " (" + std::to_string(*batch) + " per rank x " + std::to_string(world) + " ranks)");
    }
    TeacherSpec t{config.seed, inputs, static_cast<int32_t>(classes), config.data.teacher_hidden};
    *data = std::make_unique<SyntheticDataset>(t, config.data.samples);
    *sampler = std::make_unique<GlobalSampler>(config.data.samples, *batch, rank, world, config.seed);
    return Status::Ok();
  }
  COHORT_ASSIGN_OR_RETURN(auto ds, ShardedDataset::Open(config.data.path));
  if (ds->num_shards() % world != 0) {
    return InvalidArgument("dataset " + config.data.path + " has " + std::to_string(ds->num_shards()) +
                           " shards, which do not divide over " + std::to_string(world) +
                           " ranks; regenerate it with a multiple of " + std::to_string(world) + " shards");
  }
  if (ds->features() != inputs || ds->classes() != classes) {
    return InvalidArgument("dataset " + config.data.path + " has " + std::to_string(ds->features()) +
                           " features and " + std::to_string(ds->classes()) + " classes, but model.layers is " +
                           std::to_string(inputs) + " ... " + std::to_string(classes));
  }
  // Rank r owns shards r, r + world, r + 2*world, ...
  std::vector<int> mine;
  for (int s = rank; s < ds->num_shards(); s += world) mine.push_back(s);
  COHORT_RETURN_IF_ERROR(ds->Load(mine));
  std::vector<int64_t> ids = ds->LoadedSampleIds();
  if (static_cast<int64_t>(ids.size()) < *batch) {
    return InvalidArgument("dataset " + config.data.path + " gives each rank " + std::to_string(ids.size()) +
                           " samples, fewer than one batch of " + std::to_string(*batch));
  }
  *sampler = std::make_unique<LocalSampler>(std::move(ids), *batch, rank, config.seed);
  *data = std::move(ds);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Trainer>> Trainer::Create(const Config& config, Communicator& comm) {
  // 1. Same config everywhere: compare hashes so a rank with another file
  //    fails cleanly rather than deadlocking on a different schedule.
  const int world = comm.size();
  std::vector<int64_t> hashes(static_cast<size_t>(world));
  const int64_t mine = static_cast<int64_t>(config.Hash());
  COHORT_RETURN_IF_ERROR(comm.AllGather(&mine, hashes.data(), 1, DType::kI64));
  for (int r = 1; r < world; ++r) {
    if (hashes[static_cast<size_t>(r)] != hashes[0]) {
      return InvalidArgument("ranks started with different configs: rank 0 has config hash " +
                             std::to_string(static_cast<uint64_t>(hashes[0])) + ", rank " + std::to_string(r) +
                             " has " + std::to_string(static_cast<uint64_t>(hashes[static_cast<size_t>(r)])) +
                             "; give every rank the same --config and flags");
    }
  }
  auto t = std::unique_ptr<Trainer>(new Trainer(config, comm));
  // 2. Data and batch, agreed across ranks.
  Status local = ValidateLocal(config, world, comm.rank(), &t->batch_, &t->data_, &t->sampler_);
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(comm, local));
  // 3. The replica: init from the seed, then rank 0's copy wins.
  t->model_ = std::make_unique<Mlp>(config.model.layers, config.model.activation);
  const int64_t n = t->model_->num_params();
  t->params_ = Tensor::Zeros({n});
  t->grads_ = Tensor::Zeros({n + 1});
  t->model_->Init(t->params_.data<float>(), config.seed);
  COHORT_RETURN_IF_ERROR(comm.Broadcast(t->params_, 0));
  t->optimizer_ = MakeOptimizer(config.optimizer, n);
  return t;
}

std::vector<std::pair<std::string, Tensor>> Trainer::NamedParams() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ParamInfo& p : model_->params()) {
    out.emplace_back(p.name, params_.View(p.offset, p.shape).value());
  }
  return out;
}

Result<TrainSummary> Trainer::Run(int64_t steps, const std::function<void(const StepReport&)>& report) {
  TrainSummary s;
  s.world_size = comm_.size();
  s.backend = std::string(comm_.backend());
  s.steps = steps;
  s.global_batch = batch_ * comm_.size();
  s.num_params = model_->num_params();
  const int64_t n = model_->num_params();
  const int64_t inputs = model_->inputs();
  std::vector<float> x(static_cast<size_t>(batch_ * inputs));
  std::vector<int32_t> y(static_cast<size_t>(batch_));
  std::vector<int64_t> ids(static_cast<size_t>(batch_));
  std::deque<double> recent;
  StepTimes times;
  double data_s = 0, allreduce_s = 0, optim_s = 0;
  const double start = Now();
  double last_report = start, allreduce_at_report = 0;
  int64_t step_at_report = 0;
  for (int64_t i = 0; i < steps; ++i, ++step_) {
    double t0 = Now();
    sampler_->Indices(step_, ids);
    COHORT_RETURN_IF_ERROR(data_->Fill(ids, x.data(), y.data()));
    double t1 = Now();
    data_s += t1 - t0;
    float* g = grads_.data<float>();
    g[n] = static_cast<float>(model_->ForwardBackward(params_.data<float>(), x.data(), y.data(), batch_, g, &times));
    double t2 = Now();
    COHORT_RETURN_IF_ERROR(comm_.AllReduce(grads_, ReduceOp::kAvg).WithContext("gradient all-reduce at step " +
                                                                               std::to_string(step_ + 1)));
    double t3 = Now();
    allreduce_s += t3 - t2;
    optimizer_->Step(params_.data<float>(), g);
    optim_s += Now() - t3;
    const double loss = g[n];
    if (i == 0) s.initial_loss = loss;
    s.last_loss = loss;
    recent.push_back(loss);
    if (recent.size() > 10) recent.pop_front();
    const double now = Now();
    const int64_t every = config_.train.log_every;
    const bool due = every > 0 ? (i + 1) % every == 0 : now - last_report >= 1.0;
    if (report && (due || i + 1 == steps || i == 0)) {
      const int64_t done = i + 1 - step_at_report;
      const double span = now - last_report;
      StepReport r;
      r.step = i + 1;
      r.total_steps = steps;
      r.loss = loss;
      r.samples_per_s = span > 0 ? static_cast<double>(done * s.global_batch) / span : 0;
      r.step_ms = done > 0 ? span * 1e3 / static_cast<double>(done) : 0;
      r.allreduce_share = span > 0 ? (allreduce_s - allreduce_at_report) / span : 0;
      report(r);
      last_report = now;
      step_at_report = i + 1;
      allreduce_at_report = allreduce_s;
    }
  }
  s.train_s = Now() - start;
  s.final_loss = std::accumulate(recent.begin(), recent.end(), 0.0) / static_cast<double>(recent.size());
  s.samples_per_s = static_cast<double>(steps * s.global_batch) / s.train_s;
  const double per = 1e3 / static_cast<double>(steps);
  s.step_ms = s.train_s * per;
  s.data_ms = data_s * per;
  s.forward_ms = times.forward_s * per;
  s.backward_ms = times.backward_s * per;
  s.allreduce_ms = allreduce_s * per;
  s.optimizer_ms = optim_s * per;
  s.allreduce_share = allreduce_s / s.train_s;
  s.optimizer_state_bytes = optimizer_->state_bytes();
  return s;
}

}  // namespace cohort
