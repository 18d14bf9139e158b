#include "runtime/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <numeric>

#include "core/clock.h"
#include "runtime/data/idx.h"
#include "sharding/data_plan.h"

namespace cohort {
namespace {

constexpr char kMetaLossScale[] = "loss_scale";
constexpr char kMetaLossScaleClean[] = "loss_scale_clean_steps";
// Evaluation batches draw their windows with the seed xor this.
constexpr uint64_t kEvalSeedSalt = 0x6576616c2d6b6579ull;

const char* PrecisionName(DType t) {
  return t == DType::kBF16 ? "bf16" : t == DType::kF16 ? "fp16" : "fp32";
}

// Which shards data rank `rank` of `ranks` owns, by the configured placement.
Result<std::vector<int>> OwnedShards(const Config& config, int num_shards, int rank, int ranks) {
  std::vector<int> mine;
  if (config.data.placement == "modulo") {
    if (num_shards % ranks != 0) {
      return InvalidArgument("dataset " + config.data.path + " has " + std::to_string(num_shards) +
                             " shards, which do not divide over " + std::to_string(ranks) +
                             " ranks; regenerate it with a multiple of " + std::to_string(ranks) +
                             " shards or use a consistent data.placement");
    }
    for (int s = rank; s < num_shards; s += ranks) mine.push_back(s);
    return mine;
  }
  sharding::DataPlanOptions opt;
  opt.scheme = config.data.placement;
  opt.shuffle_seed = config.seed;
  COHORT_ASSIGN_OR_RETURN(sharding::EpochPlan plan,
                          sharding::PlanEpoch(num_shards, sharding::MakeMembers(ranks), 0, opt));
  for (int64_t s : plan.walks[static_cast<size_t>(rank)].shards)
    mine.push_back(static_cast<int>(s));
  return mine;
}

// data.source tokens: the training split (and the validation split when
// train.eval_every asks for it), checked against the model's vocabulary and
// context.
Status OpenTokens(const Config& config, std::unique_ptr<TokenDataset>* train,
                  std::unique_ptr<TokenDataset>* val) {
  const GptConfig& m = config.model.gpt;
  COHORT_ASSIGN_OR_RETURN(*train,
                          TokenDataset::Open(config.data.path, TokenSplit::kTrain, m.vocab));
  auto check = [&](const TokenDataset& d, const char* split) -> Status {
    if (d.tokens() < m.context + 1) {
      return InvalidArgument(
          "the " + std::string(split) + " tokens in " + config.data.path + " (" +
          std::to_string(d.tokens()) +
          ") are fewer than one window of model.context + 1 = " + std::to_string(m.context + 1));
    }
    return Status::Ok();
  };
  COHORT_RETURN_IF_ERROR(check(**train, "training"));
  if (config.train.eval_every > 0) {
    COHORT_ASSIGN_OR_RETURN(*val, TokenDataset::Open(config.data.path, TokenSplit::kVal, m.vocab));
    COHORT_RETURN_IF_ERROR(check(**val, "validation"));
  }
  return Status::Ok();
}

// data.source idx: the training split, sampled in seeded epochs with each
// data rank taking its share of every global batch (GlobalSampler), and the
// test split when train.eval_every asks for it.
Status OpenIdx(const Config& config, int64_t batch, int drank, int dranks,
               std::unique_ptr<Dataset>* data, std::unique_ptr<Sampler>* sampler,
               std::unique_ptr<IdxDataset>* test) {
  const int64_t inputs = config.model.layers.front(), classes = config.model.layers.back();
  COHORT_ASSIGN_OR_RETURN(auto train, IdxDataset::Open(config.data.path, IdxSplit::kTrain));
  if (train->features() != inputs || train->classes() != classes) {
    return InvalidArgument("dataset " + config.data.path + " has " +
                           std::to_string(train->features()) + " features and " +
                           std::to_string(train->classes()) + " classes, but model.layers is " +
                           std::to_string(inputs) + " ... " + std::to_string(classes));
  }
  if (train->samples() < batch * dranks) {
    return InvalidArgument(
        "dataset " + config.data.path + " has " + std::to_string(train->samples()) +
        " training samples, fewer than one global batch of " + std::to_string(batch * dranks));
  }
  *sampler = std::make_unique<GlobalSampler>(train->samples(), batch, drank, dranks, config.seed);
  *data = std::move(train);
  if (config.train.eval_every > 0) {
    COHORT_ASSIGN_OR_RETURN(*test, IdxDataset::Open(config.data.path, IdxSplit::kTest));
  }
  return Status::Ok();
}

Status ValidateLocal(const Config& config, const ParallelGroups& g, int64_t* batch,
                     std::unique_ptr<Dataset>* data, std::unique_ptr<Sampler>* sampler,
                     std::unique_ptr<TokenDataset>* tokens,
                     std::unique_ptr<TokenDataset>* val_tokens, std::unique_ptr<IdxDataset>* test) {
  const int world = g.world->size();
  const int tensor = config.parallel.tensor;
  if (world % tensor != 0) {
    return InvalidArgument("config " + config.source + ": parallel.tensor " +
                           std::to_string(tensor) + " does not divide the world of " +
                           std::to_string(world) + " ranks");
  }
  COHORT_RETURN_IF_ERROR(CheckModel(config.model, tensor).WithContext("config " + config.source));
  const int dranks = world / tensor;
  const int drank = g.world->rank() / tensor;
  COHORT_ASSIGN_OR_RETURN(*batch, config.BatchPerRank(dranks));
  if (config.data.source == DataSource::kTokens) return OpenTokens(config, tokens, val_tokens);
  if (config.data.source == DataSource::kIdx)
    return OpenIdx(config, *batch, drank, dranks, data, sampler, test);
  const int64_t inputs = config.model.layers.front();
  const int64_t classes = config.model.layers.back();
  if (classes < 2)
    return InvalidArgument("config " + config.source +
                           ": the last of model.layers (classes) must be at least 2");
  if (config.data.source == DataSource::kSynthetic) {
    const int64_t global = *batch * dranks;
    if (config.data.samples < global) {
      return InvalidArgument(
          "config " + config.source + ": data.samples " + std::to_string(config.data.samples) +
          " is smaller than one global batch of " + std::to_string(global) + " (" +
          std::to_string(*batch) + " per data rank x " + std::to_string(dranks) + ")");
    }
    TeacherSpec t{config.seed, inputs, static_cast<int32_t>(classes), config.data.teacher_hidden};
    *data = std::make_unique<SyntheticDataset>(t, config.data.samples);
    *sampler =
        std::make_unique<GlobalSampler>(config.data.samples, *batch, drank, dranks, config.seed);
    return Status::Ok();
  }
  COHORT_ASSIGN_OR_RETURN(auto ds, ShardedDataset::Open(config.data.path));
  if (ds->features() != inputs || ds->classes() != classes) {
    return InvalidArgument("dataset " + config.data.path + " has " +
                           std::to_string(ds->features()) + " features and " +
                           std::to_string(ds->classes()) + " classes, but model.layers is " +
                           std::to_string(inputs) + " ... " + std::to_string(classes));
  }
  COHORT_ASSIGN_OR_RETURN(std::vector<int> mine,
                          OwnedShards(config, ds->num_shards(), drank, dranks));
  COHORT_RETURN_IF_ERROR(ds->Load(mine));
  std::vector<ShardWalkSampler::Shard> owned;
  int64_t samples = 0;
  for (int s : mine) {
    const ShardHeader& h = ds->header(s);
    owned.push_back({s, static_cast<int64_t>(h.first_sample), static_cast<int64_t>(h.samples)});
    samples += static_cast<int64_t>(h.samples);
  }
  if (samples < *batch) {
    return InvalidArgument("dataset " + config.data.path + " gives data rank " +
                           std::to_string(drank) + " " + std::to_string(samples) +
                           " samples, fewer than one batch of " + std::to_string(*batch));
  }
  *sampler = std::make_unique<ShardWalkSampler>(std::move(owned), *batch,
                                                static_cast<uint64_t>(drank), config.seed);
  *data = std::move(ds);
  return Status::Ok();
}

// Same config everywhere: compares hashes so a rank with another file fails
// cleanly rather than deadlocking on a different schedule. Collective.
Status CheckSameConfig(Communicator& world, const Config& config) {
  std::vector<int64_t> hashes(static_cast<size_t>(world.size()));
  const int64_t mine = static_cast<int64_t>(config.Hash());
  COHORT_RETURN_IF_ERROR(world.AllGather(&mine, hashes.data(), 1, DType::kI64));
  for (int r = 1; r < world.size(); ++r) {
    if (hashes[static_cast<size_t>(r)] != hashes[0]) {
      return InvalidArgument("ranks started with different configs: rank 0 has config hash " +
                             std::to_string(static_cast<uint64_t>(hashes[0])) + ", rank " +
                             std::to_string(r) + " has " +
                             std::to_string(static_cast<uint64_t>(hashes[static_cast<size_t>(r)])) +
                             "; give every rank the same --config and flags");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Trainer>> Trainer::Create(const Config& config, ParallelGroups g,
                                                 Timeline* timeline, Compute* compute) {
  Compute& dev = compute != nullptr ? *compute : HostCompute();
  // 1. Same config everywhere.
  const int world = g.world->size();
  COHORT_RETURN_IF_ERROR(CheckSameConfig(*g.world, config));
  auto t = std::unique_ptr<Trainer>(new Trainer(config, g, timeline));
  t->compute_ = &dev;
  // 2. Layout, data and batch, agreed across ranks.
  Status local = ValidateLocal(config, g, &t->batch_, &t->data_, &t->sampler_, &t->tokens_,
                               &t->val_tokens_, &t->test_);
  if (local.ok() && !dev.host() && config.train.compression != DType::kF32) {
    local = InvalidArgument("config " + config.source + ": train.compression " +
                            std::string(DTypeName(config.train.compression)) +
                            " casts gradients on the host; on " + dev.Describe() +
                            " leave it at fp32 (NCCL reduces the fp32 gradients on the device)");
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(*g.world, local));
  COHORT_CHECK(g.tensor->size() == config.parallel.tensor &&
               g.data->size() * g.tensor->size() == world)
      << "parallel groups were not split by parallel.tensor";
  // 3. This rank's part of the model: init from the seed, then data rank 0's
  //    copy wins (all data ranks hold the same part).
  t->model_ = MakeModel(config.model, g.tensor, &dev);
  const int64_t n = t->model_->num_params();
  const int64_t d = g.data->size();
  t->partition_ = config.parallel.zero == 1 ? (n + d - 1) / d : n;
  const int64_t padded = config.parallel.zero == 1 ? t->partition_ * d : n;
  COHORT_RETURN_IF_ERROR(t->AllocateBuffers(padded));
  COHORT_RETURN_IF_ERROR(t->InitParams(n));
  Status state = [&]() -> Status {
    if (config.train.precision != DType::kF32) {
      COHORT_ASSIGN_OR_RETURN(t->params16_, dev.Alloc({n}, config.train.precision));
      t->CastParams();
    }
    if (config.parallel.zero == 1) {
      COHORT_ASSIGN_OR_RETURN(t->grad_part_, dev.Alloc({t->partition_}, DType::kF32));
      COHORT_ASSIGN_OR_RETURN(t->optimizer_, MakeOptimizer(config.optimizer, t->partition_, &dev));
    } else {
      COHORT_ASSIGN_OR_RETURN(t->optimizer_, MakeOptimizer(config.optimizer, n, &dev));
    }
    return Status::Ok();
  }();
  COHORT_RETURN_IF_ERROR(
      AgreeOnStatus(*g.world, state.WithContext("allocating on " + dev.Describe())));
  if (config.train.precision == DType::kF16)
    t->scaler_ = std::make_unique<LossScaler>(config.train.loss_scale);
  if (config.parallel.zero != 1) t->MakeGradientSync(padded);
  if (!config.checkpoint.dir.empty()) t->writer_ = std::make_unique<CheckpointWriter>();
  return t;
}

Status Trainer::AllocateBuffers(int64_t padded) {
  Compute& dev = *compute_;
  // Device memory can run out: agree, so no rank is left in a collective.
  Status allocated = [&]() -> Status {
    COHORT_ASSIGN_OR_RETURN(params_, dev.Alloc({padded}, DType::kF32));
    COHORT_ASSIGN_OR_RETURN(loss_dev_, dev.Alloc({1}, DType::kF32));
    COHORT_ASSIGN_OR_RETURN(found_dev_, dev.Alloc({1}, DType::kI32));
    if (!dev.host()) {
      COHORT_ASSIGN_OR_RETURN(grads_, dev.Alloc({padded + 1}, DType::kF32));
    }
    return Status::Ok();
  }();
  COHORT_RETURN_IF_ERROR(
      AgreeOnStatus(*g_.world, allocated.WithContext("allocating on " + dev.Describe())));
  // On the CPU, gradients live in the data communicator's registered memory
  // where it has some (shared memory for shm), so the all-reduce copies
  // nothing. On a device they are device memory (NCCL registers nothing).
  if (dev.host()) {
    const size_t grad_bytes = static_cast<size_t>(padded + 1) * sizeof(float);
    auto registered = g_.data->AllocateRegistered(grad_bytes);
    if (registered.ok()) {
      std::memset(*registered, 0, grad_bytes);
      // Not freed one by one: FreeRegistered is collective on shm, and a rank
      // leaving on an error must not wait for its peers. The communicator
      // releases its registered memory when it is destroyed, after the trainer.
      auto storage = Storage::Wrap(*registered, grad_bytes, Device::kCpu, [] {});
      COHORT_ASSIGN_OR_RETURN(grads_,
                              Tensor::FromStorage(std::move(storage), {padded + 1}, DType::kF32));
    } else {
      grads_ = Tensor::Zeros({padded + 1});
    }
  }
  return Status::Ok();
}

Status Trainer::InitParams(int64_t n) {
  Compute& dev = *compute_;
  {
    std::vector<float> init(static_cast<size_t>(n));
    model_->Init(init.data(), config_.seed);
    dev.CopyToDevice(params_.raw(), init.data(), init.size() * sizeof(float));
    // The broadcast runs on the communicator (its own stream on a GPU).
    COHORT_RETURN_IF_ERROR(
        AgreeOnStatus(*g_.world, dev.Sync().WithContext("initialising the parameters")));
  }
  return g_.data->Broadcast(params_.raw(), static_cast<size_t>(n), DType::kF32, 0);
}

void Trainer::MakeGradientSync(int64_t padded) {
  const auto mib = [](double m) { return static_cast<int64_t>(m * 1024 * 1024); };
  auto buckets = PlanGradBuckets(model_->LayerRanges(), padded + 1, mib(config_.train.bucket_mb),
                                 mib(config_.train.first_bucket_mb));
  void* wire = nullptr;
  if (config_.train.compression != DType::kF32) {
    // The 16-bit twin of the gradients, registered like them (never freed
    // one by one, for the same reason).
    const size_t wire_bytes = static_cast<size_t>(padded + 1) * 2;
    auto w = g_.data->AllocateRegistered(wire_bytes);
    if (w.ok()) {
      wire = *w;
    } else {
      wire_heap_.assign(static_cast<size_t>(padded + 1), 0);
      wire = wire_heap_.data();
    }
  }
  sync_ = std::make_unique<GradientSync>(*g_.data, grads_.data<float>(), std::move(buckets),
                                         static_cast<int>(model_->LayerRanges().size()),
                                         config_.train.overlap, timeline_,
                                         config_.train.compression, wire, compute_);
}

CheckpointLayout Trainer::Layout() const {
  CheckpointLayout l;
  l.step = step_;
  l.world_size = g_.world->size();
  l.tensor = g_.tensor->size();
  l.data = g_.data->size();
  l.zero = config_.parallel.zero;
  l.model = config_.model;
  l.optimizer = config_.optimizer.type == OptimizerType::kAdamW ? "adamw" : "sgd";
  l.optimizer_steps = optimizer_->steps();
  l.config_hash = std::to_string(config_.Hash());
  l.config_yaml = config_.text;
  return l;
}

Result<CheckpointShard> Trainer::MakeShard() const {
  CheckpointShard sh;
  sh.rank = g_.world->rank();
  sh.tensor_rank = g_.tensor->rank();
  sh.data_rank = g_.data->rank();
  const int64_t n = model_->num_params();
  // Host copies (the writer thread serialises them while training goes on).
  auto copy = [this](const float* src, int64_t count) -> Result<Tensor> {
    Tensor t = Tensor::Zeros({count});
    if (count > 0)
      COHORT_RETURN_IF_ERROR(compute_->CopyToHost(t.raw(), src, static_cast<size_t>(count) * 4));
    return t;
  };
  if (sh.data_rank == 0) {
    COHORT_ASSIGN_OR_RETURN(Tensor p, copy(params_.data<float>(), n));
    sh.tensors.emplace_back("param", std::move(p));
  }
  sh.metadata = ScalerMetadata();
  if (config_.parallel.zero == 1) {
    sh.optim_offset = std::min(n, partition_ * sh.data_rank);
    const int64_t count = std::max<int64_t>(0, std::min(partition_, n - sh.optim_offset));
    for (const auto& [name, t] : optimizer_->State()) {
      COHORT_ASSIGN_OR_RETURN(Tensor o, copy(t.data<float>(), count));
      sh.tensors.emplace_back("optim." + name, std::move(o));
    }
  } else if (sh.data_rank == 0) {
    for (const auto& [name, t] : optimizer_->State()) {
      COHORT_ASSIGN_OR_RETURN(Tensor o, copy(t.data<float>(), n));
      sh.tensors.emplace_back("optim." + name, std::move(o));
    }
  }
  return sh;
}

Status Trainer::Checkpoint(bool next) {
  Communicator& world = *g_.world;
  if (writer_->pending()) {
    auto written = writer_->Wait();
    COHORT_RETURN_IF_ERROR(
        AgreeOnStatus(world, written.status()).WithContext("writing checkpoint"));
    // Every rank's (bytes, crc) so rank 0 can write the manifest.
    const int64_t mine[2] = {written->bytes, static_cast<int64_t>(written->crc32c)};
    std::vector<int64_t> all(static_cast<size_t>(2 * world.size()));
    COHORT_RETURN_IF_ERROR(world.AllGather(mine, all.data(), 2, DType::kI64));
    ++written_;
    write_ms_ += written->write_ms;
    Status commit;
    int64_t committed = 0;
    if (world.rank() == 0) {
      std::vector<ShardWritten> shards;
      for (int r = 0; r < world.size(); ++r) {
        shards.push_back({all[static_cast<size_t>(2 * r)],
                          static_cast<uint32_t>(all[static_cast<size_t>(2 * r + 1)])});
      }
      auto c = CommitCheckpoint(config_.checkpoint.dir, pending_, shards, config_.checkpoint.keep,
                                committer_);
      commit = c.status();
      committed = c.ok() && *c ? 1 : 0;
    }
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(world, commit).WithContext("committing checkpoint"));
    COHORT_RETURN_IF_ERROR(world.Broadcast(&committed, 1, DType::kI64, 0));
    committed_ += committed;
  }
  if (next) {
    Result<CheckpointShard> shard = MakeShard();
    COHORT_RETURN_IF_ERROR(
        AgreeOnStatus(world, shard.status()).WithContext("copying the checkpoint to the host"));
    pending_ = Layout();
    writer_->Submit(config_.checkpoint.dir, pending_, std::move(shard).value());
  }
  return Status::Ok();
}

Status Trainer::Restore(const LoadedCheckpoint& ck) {
  const CheckpointLayout& l = ck.layout;
  if (!SameArchitecture(l.model, config_.model)) {
    return FailedPrecondition("checkpoint at step " + std::to_string(l.step) +
                              " holds another model (" + DescribeModel(l.model) +
                              ", the config has " + DescribeModel(config_.model) + ")");
  }
  const std::string opt = config_.optimizer.type == OptimizerType::kAdamW ? "adamw" : "sgd";
  if (l.optimizer != opt) {
    return FailedPrecondition("checkpoint at step " + std::to_string(l.step) +
                              " was written with optimizer " + l.optimizer + ", the config uses " +
                              opt);
  }
  const int64_t n = model_->num_params();
  std::vector<float> local(static_cast<size_t>(n));
  for (const auto& [name, t] : optimizer_->State()) {
    if (ck.optim.find(name) == ck.optim.end()) {
      return FailedPrecondition("checkpoint at step " + std::to_string(l.step) +
                                " lacks optimizer state '" + name + "'");
    }
  }
  model_->FullToLocal(ck.params.data(), local.data());
  compute_->CopyToDevice(params_.raw(), local.data(), local.size() * 4);
  const int64_t offset = config_.parallel.zero == 1 ? partition_ * g_.data->rank() : 0;
  for (auto& [name, t] : optimizer_->State()) {
    model_->FullToLocal(ck.optim.at(name).data(), local.data());
    std::vector<float> part(static_cast<size_t>(t.numel()), 0.0f);  // ZeRO-1's padding stays zero
    const int64_t count = std::max<int64_t>(0, std::min(t.numel(), n - offset));
    if (count > 0) std::memcpy(part.data(), local.data() + offset, static_cast<size_t>(count) * 4);
    compute_->CopyToDevice(t.raw(), part.data(), part.size() * 4);
  }
  optimizer_->set_steps(l.optimizer_steps);
  if (params16_.defined()) CastParams();
  // The fp16 loss scaler continues where it was; a checkpoint without its
  // state (older, or from another precision) keeps the configured start.
  auto scale_it = ck.metadata.find(kMetaLossScale);
  auto clean_it = ck.metadata.find(kMetaLossScaleClean);
  if (scaler_ && scale_it != ck.metadata.end() && clean_it != ck.metadata.end()) {
    char* end1 = nullptr;
    char* end2 = nullptr;
    const double scale = std::strtod(scale_it->second.c_str(), &end1);
    const long long clean = std::strtoll(clean_it->second.c_str(), &end2, 10);
    if (*end1 != '\0' || *end2 != '\0' || !(scale >= kMinLossScale && scale <= kMaxLossScale) ||
        clean < 0) {
      return DataLoss("checkpoint at step " + std::to_string(l.step) +
                      " has a malformed loss scale ('" + scale_it->second + "', '" +
                      clean_it->second + "')");
    }
    scaler_->Restore(scale, clean);
  }
  step_ = l.step;
  return compute_->Sync().WithContext("restoring the checkpoint at step " + std::to_string(l.step));
}

void Trainer::CastParams() {
  compute_->CastFromFloat(params_.data<float>(), config_.train.precision, params16_.raw(),
                          model_->num_params(), 1.0f);
}

std::map<std::string, std::string> Trainer::ScalerMetadata() const {
  if (!scaler_) return {};
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", scaler_->scale());
  return {{kMetaLossScale, buf}, {kMetaLossScaleClean, std::to_string(scaler_->clean_steps())}};
}

Result<bool> Trainer::UnscaleGrads(float* g, int64_t n, bool agree) {
  if (grad_hook_) {
    COHORT_RETURN_IF_ERROR(compute_->Sync());
    grad_hook_(step_ + 1, g, n);
  }
  int32_t found = 0;
  compute_->Zero(found_dev_.raw(), sizeof(int32_t));
  compute_->ScaleCheckFinite(g, n, static_cast<float>(1.0 / scaler_->scale()),
                             found_dev_.data<int32_t>());
  // The one wait fp16 needs inside a step: whether to apply the update.
  COHORT_RETURN_IF_ERROR(compute_->CopyToHost(&found, found_dev_.raw(), sizeof(found)));
  if (agree && g_.world->size() > 1) {
    float any = static_cast<float>(found);
    COHORT_RETURN_IF_ERROR(g_.world->AllReduce(&any, &any, 1, DType::kF32, ReduceOp::kMax)
                               .WithContext("agreeing on fp16 gradient overflow"));
    found = any > 0 ? 1 : 0;
  }
  const bool apply = scaler_->Update(found != 0);
  if (scaler_->stuck()) {
    return FailedPrecondition(
        "fp16 gradients overflowed " + std::to_string(kMaxSkipsAtMinLossScale) +
        " steps in a row at the minimum loss scale " + std::to_string(kMinLossScale) + " (step " +
        std::to_string(step_ + 1) +
        "): the model diverged; lower optimizer.lr or use train.precision bf16");
  }
  return apply;
}

LoadedCheckpoint Trainer::EmptyState() const {
  LoadedCheckpoint ck;
  ck.layout = Layout();
  const size_t n = static_cast<size_t>(model_->num_params());
  ck.params.assign(n, 0.0f);
  for (const auto& [name, t] : optimizer_->State()) ck.optim[name].assign(n, 0.0f);
  return ck;
}

Result<LoadedCheckpoint> Trainer::CaptureState() {
  if (g_.tensor->size() != 1) {
    return FailedPrecondition(
        "capturing the training state in memory needs parallel.tensor 1 (a tensor-parallel "
        "rank holds only its part of the model)");
  }
  LoadedCheckpoint ck;
  ck.layout = Layout();
  const int64_t n = model_->num_params();
  ck.params.assign(static_cast<size_t>(n), 0.0f);
  COHORT_RETURN_IF_ERROR(
      compute_->CopyToHost(ck.params.data(), params_.raw(), static_cast<size_t>(n) * 4));
  if (config_.parallel.zero == 1) {
    // Each data rank holds `partition_` elements of each state tensor (the
    // last one padded): gather them, in rank order, into the whole tensor.
    const int64_t d = g_.data->size();
    COHORT_ASSIGN_OR_RETURN(Tensor whole, compute_->Alloc({partition_ * d}, DType::kF32));
    COHORT_RETURN_IF_ERROR(compute_->Sync());
    for (auto& [name, t] : optimizer_->State()) {
      COHORT_RETURN_IF_ERROR(
          g_.data
              ->AllGather(t.data<float>(), whole.raw(), static_cast<size_t>(partition_),
                          DType::kF32)
              .WithContext("gathering the ZeRO-1 optimizer state '" + name + "'"));
      ck.optim[name].assign(static_cast<size_t>(n), 0.0f);
      COHORT_RETURN_IF_ERROR(
          compute_->CopyToHost(ck.optim[name].data(), whole.raw(), static_cast<size_t>(n) * 4));
    }
    ck.metadata = ScalerMetadata();
    return ck;
  }
  for (const auto& [name, t] : optimizer_->State()) {
    const int64_t count = std::min<int64_t>(n, t.numel());
    ck.optim[name].assign(static_cast<size_t>(count), 0.0f);
    COHORT_RETURN_IF_ERROR(
        compute_->CopyToHost(ck.optim[name].data(), t.raw(), static_cast<size_t>(count) * 4));
  }
  ck.metadata = ScalerMetadata();
  return ck;
}

Result<std::vector<std::pair<std::string, Tensor>>> Trainer::FullParams() {
  COHORT_ASSIGN_OR_RETURN(auto whole, model_->GatherFull(params_.data<float>()));
  std::vector<std::pair<std::string, Tensor>> out;
  const auto& info = model_->params();
  for (size_t i = 0; i < info.size(); ++i) {
    const ParamInfo& p = info[i];
    if (!p.saved_transposed) {
      Tensor t = Tensor::Zeros(p.full_shape);
      std::copy(whole[i].begin(), whole[i].end(), t.data<float>());
      out.emplace_back(p.name, std::move(t));
      continue;
    }
    const int64_t rows = p.full_shape[0], cols = p.full_shape[1];
    Tensor t = Tensor::Zeros({cols, rows});
    float* dst = t.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c)
        dst[c * rows + r] = whole[i][static_cast<size_t>(r * cols + c)];
    }
    out.emplace_back(p.name, std::move(t));
  }
  return out;
}

Status Trainer::ZeroStep(double* comm_s, double* optim_s) {
  // ZeRO-1: my partition of the averaged gradient, my partition's update,
  // then everyone's partitions back into the full parameters. The
  // collectives read what the compute produced: wait for it first (on a
  // GPU; nothing to wait for on the CPU).
  Communicator& data = *g_.data;
  float* g = grads_.data<float>();
  float* p = params_.data<float>();
  float* loss = loss_dev_.data<float>();
  const double t0 = MonotonicSeconds();
  const int64_t offset = partition_ * data.rank();
  COHORT_RETURN_IF_ERROR(compute_->Sync());
  COHORT_RETURN_IF_ERROR(data.ReduceScatter(g, grad_part_.raw(), static_cast<size_t>(partition_),
                                            DType::kF32, ReduceOp::kAvg));
  COHORT_RETURN_IF_ERROR(data.AllReduce(loss, loss, 1, DType::kF32, ReduceOp::kAvg));
  const double t1 = MonotonicSeconds();
  // Each rank unscales only its partition: agree on overflow explicitly.
  bool apply = true;
  if (scaler_) {
    COHORT_ASSIGN_OR_RETURN(apply,
                            UnscaleGrads(grad_part_.data<float>(), partition_, /*agree=*/true));
  }
  if (apply && config_.train.clip_grad_norm > 0) {
    const int64_t count = std::max<int64_t>(0, std::min(partition_, model_->num_params() - offset));
    COHORT_ASSIGN_OR_RETURN(grad_norm_, ClipGradients(grad_part_.data<float>(), offset, count));
  }
  if (apply) optimizer_->Step(p + offset, grad_part_.data<float>());
  const double t2 = MonotonicSeconds();
  if (apply) {
    COHORT_RETURN_IF_ERROR(compute_->Sync());
    COHORT_RETURN_IF_ERROR(
        data.AllGather(p + offset, p, static_cast<size_t>(partition_), DType::kF32));
    if (params16_.defined()) CastParams();
  }
  const double t3 = MonotonicSeconds();
  *comm_s += (t1 - t0) + (t3 - t2);
  *optim_s += t2 - t1;
  if (timeline_) {
    timeline_->Add("reduce-scatter", Timeline::kCommTrack, t0, t1);
    timeline_->Add("optimizer (own partition)", Timeline::kComputeTrack, t1, t2);
    timeline_->Add("all-gather", Timeline::kCommTrack, t2, t3);
  }
  return Status::Ok();
}

Status Trainer::ReserveBatch() {
  if (x_host_.defined()) return Status::Ok();
  // The batch: filled on the host into staging memory (page-locked on a
  // GPU), copied to the device. On the CPU the staging memory is the batch.
  // Every step ends with a wait for the device (the loss), so the next fill
  // never overwrites a copy in flight.
  const SampleShape shape = model_->sample();
  const int64_t inputs = batch_ * shape.inputs, targets = batch_ * shape.targets;
  COHORT_ASSIGN_OR_RETURN(x_host_, compute_->AllocStaging({inputs}, shape.input_type));
  COHORT_ASSIGN_OR_RETURN(y_host_, compute_->AllocStaging({targets}, DType::kI32));
  if (!compute_->host()) {
    COHORT_ASSIGN_OR_RETURN(x_dev_, compute_->Alloc({inputs}, shape.input_type));
    COHORT_ASSIGN_OR_RETURN(y_dev_, compute_->Alloc({targets}, DType::kI32));
  }
  return Status::Ok();
}

const void* Trainer::batch_inputs() const {
  return compute_->host() ? x_host_.raw() : x_dev_.raw();
}
const int32_t* Trainer::batch_targets() const {
  return compute_->host() ? y_host_.data<int32_t>() : y_dev_.data<int32_t>();
}

Status Trainer::CopyBatchToDevice() {
  if (!compute_->host()) {
    compute_->CopyToDevice(x_dev_.raw(), x_host_.raw(), x_host_.nbytes());
    compute_->CopyToDevice(y_dev_.raw(), y_host_.raw(), y_host_.nbytes());
  }
  return Status::Ok();
}

Status Trainer::FillBatch(int64_t step) {
  if (tokens_) {
    // Data rank d takes samples [d B, (d + 1) B) of the step's global batch.
    COHORT_RETURN_IF_ERROR(tokens_->Fill(config_.seed, step, batch_ * g_.data->rank(), batch_,
                                         config_.model.gpt.context, x_host_.data<int32_t>(),
                                         y_host_.data<int32_t>()));
  } else {
    ids_.resize(static_cast<size_t>(batch_));
    sampler_->Indices(step, ids_);
    COHORT_RETURN_IF_ERROR(data_->Fill(ids_, x_host_.data<float>(), y_host_.data<int32_t>()));
  }
  return CopyBatchToDevice();
}

Status Trainer::SumOverData(std::vector<double>* values) {
  if (g_.data->size() == 1) return Status::Ok();
  const auto n = static_cast<int64_t>(values->size());
  if (eval_sums_.numel() < n) {
    COHORT_ASSIGN_OR_RETURN(eval_sums_, compute_->Alloc({n}, DType::kF64));
  }
  compute_->CopyToDevice(eval_sums_.raw(), values->data(), values->size() * 8);
  COHORT_RETURN_IF_ERROR(compute_->Sync());
  COHORT_RETURN_IF_ERROR(g_.data
                             ->AllReduce(eval_sums_.raw(), eval_sums_.raw(), values->size(),
                                         DType::kF64, ReduceOp::kSum)
                             .WithContext("summing the evaluation over the data-parallel ranks"));
  return compute_->CopyToHost(values->data(), eval_sums_.raw(), values->size() * 8);
}

Result<EvalResult> Trainer::Evaluate() {
  if (val_tokens_) return EvaluateTokens();
  if (test_) return EvaluateClassifier();
  return FailedPrecondition(
      "no held-out split to evaluate on: train.eval_every needs data.source tokens or idx");
}

Result<EvalResult> Trainer::EvaluateTokens() {
  COHORT_RETURN_IF_ERROR(ReserveBatch());
  if (!eval_loss_.defined()) {
    COHORT_ASSIGN_OR_RETURN(eval_loss_, compute_->Alloc({1}, DType::kF32));
  }
  // Batch k of every evaluation is the same: windows from a seed of its own,
  // indexed by k in place of the step.
  std::vector<double> sum = {0.0};
  for (int64_t k = 0; k < config_.train.eval_batches; ++k) {
    COHORT_RETURN_IF_ERROR(val_tokens_->Fill(
        config_.seed ^ kEvalSeedSalt, k, batch_ * g_.data->rank(), batch_,
        config_.model.gpt.context, x_host_.data<int32_t>(), y_host_.data<int32_t>()));
    COHORT_RETURN_IF_ERROR(CopyBatchToDevice());
    COHORT_RETURN_IF_ERROR(model_->LossTo(params_.data<float>(), batch_inputs(), batch_targets(),
                                          batch_, eval_loss_.data<float>()));
    COHORT_ASSIGN_OR_RETURN(float v, compute_->ReadFloat(eval_loss_.data<float>()));
    sum[0] += v;
  }
  // Every data rank evaluated as many samples: the mean of the means.
  COHORT_RETURN_IF_ERROR(SumOverData(&sum));
  EvalResult r;
  r.samples = config_.train.eval_batches * batch_ * g_.data->size();
  r.loss = sum[0] / static_cast<double>(config_.train.eval_batches * g_.data->size());
  return r;
}

Result<EvalResult> Trainer::EvaluateClassifier() {
  COHORT_RETURN_IF_ERROR(ReserveBatch());
  const int64_t n = test_->samples(), ranks = g_.data->size(), d = g_.data->rank();
  const int64_t lo = n * d / ranks, hi = n * (d + 1) / ranks;
  const int32_t k = model_->sample().classes;
  // [loss sum, correct, confusion (k x k)], summed in double: counts stay exact.
  std::vector<double> acc(2 + static_cast<size_t>(k) * static_cast<size_t>(k), 0.0);
  std::vector<float> logits(static_cast<size_t>(batch_ * k));
  for (int64_t at = lo; at < hi; at += batch_) {
    const int64_t b = std::min(batch_, hi - at);
    ids_.resize(static_cast<size_t>(b));
    std::iota(ids_.begin(), ids_.end(), at);
    COHORT_RETURN_IF_ERROR(test_->Fill(ids_, x_host_.data<float>(), y_host_.data<int32_t>()));
    COHORT_RETURN_IF_ERROR(CopyBatchToDevice());
    COHORT_RETURN_IF_ERROR(
        model_->LogitsToHost(params_.data<float>(), batch_inputs(), b, logits.data()));
    const int32_t* y = y_host_.data<int32_t>();
    for (int64_t i = 0; i < b; ++i) {
      const float* row = logits.data() + i * k;
      const int32_t pred = static_cast<int32_t>(std::max_element(row, row + k) - row);
      double sum = 0;
      for (int32_t c = 0; c < k; ++c) sum += std::exp(static_cast<double>(row[c]) - row[pred]);
      acc[0] += std::log(sum) + row[pred] - row[y[i]];
      acc[1] += pred == y[i] ? 1 : 0;
      acc[2 + static_cast<size_t>(y[i]) * static_cast<size_t>(k) + static_cast<size_t>(pred)] += 1;
    }
  }
  COHORT_RETURN_IF_ERROR(SumOverData(&acc));
  EvalResult r;
  r.samples = n;
  r.classes = k;
  r.loss = acc[0] / static_cast<double>(n);
  r.accuracy = acc[1] / static_cast<double>(n);
  for (size_t i = 2; i < acc.size(); ++i) r.confusion.push_back(static_cast<int64_t>(acc[i]));
  return r;
}

Result<double> Trainer::ClipGradients(float* grads, int64_t offset, int64_t n) {
  const auto& info = model_->params();
  if (!norm_parts_.defined()) {
    COHORT_ASSIGN_OR_RETURN(norm_parts_,
                            compute_->Alloc({static_cast<int64_t>(info.size()) + 1}, DType::kF32));
  }
  float* parts = norm_parts_.data<float>();
  compute_->Zero(parts, static_cast<size_t>(norm_parts_.numel()) * 4);
  // A tensor that every rank of the tensor group holds whole (replicated,
  // or a row-parallel layer's bias) counts once, on tensor rank 0.
  const bool lead = g_.tensor->rank() == 0;
  for (size_t i = 0; i < info.size(); ++i) {
    const ParamInfo& p = info[i];
    const bool whole =
        p.split == LayerSplit::kReplicated || (p.split == LayerSplit::kRow && p.is_bias);
    if (whole && !lead) continue;
    int64_t count = 1;
    for (int64_t d : p.shape) count *= d;
    const int64_t lo = std::max(p.offset, offset), hi = std::min(p.offset + count, offset + n);
    if (hi > lo) compute_->SumSquares(grads + (lo - offset), hi - lo, parts + i);
  }
  std::vector<float> host(info.size());
  COHORT_RETURN_IF_ERROR(compute_->CopyToHost(host.data(), parts, host.size() * 4));
  double sumsq = 0;
  for (float v : host) sumsq += v;
  // ZeRO 0: every data rank holds the same gradients, so the tensor group's
  // parts make the whole; ZeRO-1: each data rank holds a partition, so the
  // whole world's parts do. The world is the host agreement communicator
  // (MPI under `cohort train`): it sums host memory, never the device's.
  const float mine = static_cast<float>(sumsq);
  if (config_.parallel.zero == 1 && g_.world->size() > 1) {
    float all = mine;
    COHORT_RETURN_IF_ERROR(g_.world->AllReduce(&all, &all, 1, DType::kF32, ReduceOp::kSum)
                               .WithContext("summing the gradient norm"));
    sumsq = all;
  } else if (config_.parallel.zero != 1 && g_.tensor->size() > 1) {
    // The tensor group works on the compute's memory (NCCL on a GPU).
    Communicator& group = *g_.tensor;
    float* total = parts + info.size();
    compute_->CopyToDevice(total, &mine, sizeof(mine));
    COHORT_RETURN_IF_ERROR(compute_->Sync());
    COHORT_RETURN_IF_ERROR(group.AllReduce(total, total, 1, DType::kF32, ReduceOp::kSum)
                               .WithContext("summing the gradient norm"));
    COHORT_ASSIGN_OR_RETURN(float all, compute_->ReadFloat(total));
    sumsq = all;
  }
  const double norm = std::sqrt(sumsq);
  // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1.
  const double coef = config_.train.clip_grad_norm / (norm + 1e-6);
  if (coef < 1.0) compute_->Scale(grads, n, static_cast<float>(coef));
  return norm;
}

TrainSummary Trainer::StartSummary(int64_t steps) const {
  TrainSummary s;
  s.world_size = g_.world->size();
  s.data_parallel = g_.data->size();
  s.tensor_parallel = g_.tensor->size();
  s.zero = config_.parallel.zero;
  s.backend = std::string(g_.world->backend());
  s.steps = steps;
  s.global_batch = batch_ * g_.data->size();
  s.num_params = model_->full_num_params();
  s.local_params = model_->num_params();
  s.precision = PrecisionName(config_.train.precision);
  s.device = compute_->Describe();
  s.start_step = step_;
  return s;
}

double Trainer::CommSeconds(const RunClock& c) const {
  return c.sync_s + (sync_ ? sync_->comm_seconds() : 0);
}

Result<float> Trainer::TrainStep(RunClock* c, double t0) {
  Precision prec;
  prec.compute = config_.train.precision;
  prec.params16 = params16_.defined() ? params16_.data<uint16_t>() : nullptr;
  if (scaler_) prec.loss_scale = static_cast<float>(scaler_->scale());
  const Precision* mixed = config_.train.precision != DType::kF32 ? &prec : nullptr;
  const double t1 = MonotonicSeconds();
  const double fwd_before = c->times.forward_s;
  float* g = grads_.data<float>();
  const int64_t padded = params_.numel();
  auto add_compute_spans = [&](double backward_end) {
    if (!timeline_) return;
    const double fwd_end = t1 + (c->times.forward_s - fwd_before);
    timeline_->Add("data", Timeline::kComputeTrack, t0, t1);
    timeline_->Add("forward", Timeline::kComputeTrack, t1, fwd_end);
    timeline_->Add("backward", Timeline::kComputeTrack, fwd_end, backward_end);
  };
  if (!sync_) {  // ZeRO-1
    COHORT_RETURN_IF_ERROR(
        model_->ForwardBackwardTo(params_.data<float>(), batch_inputs(), batch_targets(), batch_, g,
                                  loss_dev_.data<float>(), &c->times, nullptr, mixed));
    add_compute_spans(MonotonicSeconds());
    Status zs = ZeroStep(&c->sync_s, &c->optim_s);
    if (!zs.ok()) return zs.WithContext("gradient sync at step " + std::to_string(step_ + 1));
    return compute_->ReadFloat(loss_dev_.data<float>());
  }
  // ZeRO 0: buckets launch as backward finishes their layers; the loss rides
  // in the last slot of the first bucket.
  sync_->Begin();
  std::function<void(int)> ready = [&](int layer) { sync_->LayerReady(layer); };
  Status fb = model_->ForwardBackwardTo(params_.data<float>(), batch_inputs(), batch_targets(),
                                        batch_, g, g + padded, &c->times, &ready, mixed);
  const double t2 = MonotonicSeconds();
  Status st = sync_->Finish();  // always wait: the comm thread may still use the buffer
  COHORT_RETURN_IF_ERROR(fb);
  if (!st.ok()) return st.WithContext("gradient sync at step " + std::to_string(step_ + 1));
  const double t3 = MonotonicSeconds();
  c->wait_s += t3 - t2;
  // Every rank holds the same all-reduced gradients, so each finds the same
  // overflow; tensor-parallel ranks hold different parts and agree.
  bool apply = true;
  if (scaler_) {
    COHORT_ASSIGN_OR_RETURN(apply, UnscaleGrads(g, padded, /*agree=*/g_.tensor->size() > 1));
  }
  if (apply && config_.train.clip_grad_norm > 0) {
    COHORT_ASSIGN_OR_RETURN(grad_norm_, ClipGradients(g, 0, model_->num_params()));
  }
  if (apply) {
    optimizer_->Step(params_.data<float>(), g);
    if (params16_.defined()) CastParams();
  }
  // The loss rode in the buffer's last slot; reading it is the step's last
  // wait for the device.
  COHORT_ASSIGN_OR_RETURN(float loss, compute_->ReadFloat(g + padded));
  const double t4 = MonotonicSeconds();
  c->optim_s += t4 - t3;
  add_compute_spans(t2);
  if (timeline_) {
    if (t3 - t2 > 1e-6) timeline_->Add("wait for all-reduce", Timeline::kComputeTrack, t2, t3);
    timeline_->Add("optimizer", Timeline::kComputeTrack, t3, t4);
  }
  return loss;
}

Status Trainer::CheckpointIfDue(bool last_step, RunClock* c) {
  const int64_t done = step_ + 1;  // the checkpoint records the steps completed
  if (!writer_ || config_.checkpoint.every <= 0 || done % config_.checkpoint.every != 0 ||
      last_step || done <= checkpoint_floor_) {
    return Status::Ok();
  }
  const double c0 = MonotonicSeconds();
  ++step_;
  Status cs = Checkpoint(/*next=*/true);
  --step_;
  c->ckpt_s += MonotonicSeconds() - c0;
  return cs;
}

Result<TrainSummary> Trainer::Run(int64_t steps,
                                  const std::function<void(const StepReport&)>& report) {
  TrainSummary s = StartSummary(steps);
  const int64_t skipped_before = scaler_ ? scaler_->skipped_steps() : 0;
  COHORT_RETURN_IF_ERROR(ReserveBatch());
  std::deque<double> recent;  // the last losses, for final_loss
  RunClock c;
  const double sync_base = sync_ ? sync_->comm_seconds() : 0;
  const double start = MonotonicSeconds();
  // The previous progress point: its time, step and gradient-sync seconds.
  double last_report = start, sync_at_report = sync_base;
  int64_t step_at_report = 0;
  // Bytes one gradient sync reduces (StepStats): the flat buffer, loss slot included (ZeRO 0).
  const int64_t sync_bytes =
      sync_ ? (params_.numel() + 1) * (config_.train.compression == DType::kF32 ? 4 : 2)
            : params_.numel() * 4;
  for (int64_t i = 0; i < steps; ++i, ++step_) {
    const double t0 = MonotonicSeconds();
    const double comm_at_start = CommSeconds(c);
    COHORT_RETURN_IF_ERROR(FillBatch(step_));
    c.data_s += MonotonicSeconds() - t0;
    const float lr =
        ScheduledLr(config_.train.lr_schedule, config_.optimizer.lr, step_, config_.train.steps);
    optimizer_->set_lr(lr);
    grad_norm_ = -1;
    COHORT_ASSIGN_OR_RETURN(const float loss, TrainStep(&c, t0));
    if (stop_check_ && i + 1 < steps) {
      COHORT_ASSIGN_OR_RETURN(const bool stop, stop_check_());
      if (stop) {  // this step becomes the last: evaluated, reported and checkpointed as one
        steps = i + 1;
        s.steps = steps;
        s.stopped_early = true;
      }
    }
    COHORT_RETURN_IF_ERROR(CheckpointIfDue(i + 1 == steps, &c));
    COHORT_ASSIGN_OR_RETURN(const bool evaluated, EvaluateIfDue(i + 1 == steps, &c, &s));
    const double val_loss = evaluated ? s.eval.loss : -1;
    const double eval_accuracy = evaluated ? s.eval.accuracy : -1;
    if (i == 0) s.initial_loss = loss;
    s.last_loss = loss;
    s.lr = lr;
    s.grad_norm = grad_norm_;
    recent.push_back(loss);
    if (recent.size() > 10) recent.pop_front();
    const double now = MonotonicSeconds();
    const int64_t every = config_.train.log_every;
    const bool due = (every > 0 ? (i + 1) % every == 0 : now - last_report >= 1.0) || val_loss >= 0;
    if (report && (due || i + 1 == steps || i == 0)) {
      const int64_t done = i + 1 - step_at_report;
      const double span = now - last_report;
      StepReport r;
      r.step = i + 1;
      r.total_steps = steps;
      r.loss = loss;
      r.samples_per_s = span > 0 ? static_cast<double>(done * s.global_batch) / span : 0;
      r.step_ms = done > 0 ? span * 1e3 / static_cast<double>(done) : 0;
      r.allreduce_share = span > 0 ? (CommSeconds(c) - sync_at_report) / span : 0;
      r.lr = lr;
      r.grad_norm = grad_norm_;
      r.val_loss = val_loss;
      r.eval_accuracy = eval_accuracy;
      report(r);
      last_report = now;
      step_at_report = i + 1;
      sync_at_report = CommSeconds(c);
    }
    if (step_observer_) {
      StepStats st;
      st.step = step_ + 1;
      st.loss = loss;
      st.step_s = MonotonicSeconds() - t0;
      st.sync_s = CommSeconds(c) - comm_at_start;
      st.sync_bytes = sync_bytes;
      st.data_ranks = g_.data->size();
      st.samples = batch_;
      st.checkpoints_committed = committed_;
      st.lr = lr;
      st.grad_norm = grad_norm_;
      st.val_loss = val_loss;
      st.eval_accuracy = eval_accuracy;
      step_observer_(st);
    }
    if (step_hook_) {
      ++step_;  // the hook sees the steps completed
      Status hs = step_hook_(step_, loss);
      --step_;
      COHORT_RETURN_IF_ERROR(hs);
    }
  }
  COHORT_RETURN_IF_ERROR(EndRun(steps, skipped_before, &c, &s));
  s.train_s = MonotonicSeconds() - start;
  if (sync_) c.sync_s += sync_->comm_seconds() - sync_base;
  if (steps == 0) return s;  // resumed at the end: nothing ran
  s.final_loss =
      std::accumulate(recent.begin(), recent.end(), 0.0) / static_cast<double>(recent.size());
  FinishSummary(c, steps, &s);
  return s;
}

Result<bool> Trainer::EvaluateIfDue(bool last_step, RunClock* c, TrainSummary* s) {
  const int64_t eval_every = config_.train.eval_every;
  if (eval_every <= 0 || ((step_ + 1) % eval_every != 0 && !last_step)) return false;
  const double e0 = MonotonicSeconds();
  COHORT_ASSIGN_OR_RETURN(s->eval, Evaluate());
  c->eval_s += MonotonicSeconds() - e0;
  s->val_loss = s->eval.loss;
  ++s->evaluations;
  return true;
}

Status Trainer::EndRun(int64_t steps, int64_t skipped_before, RunClock* c, TrainSummary* s) {
  if (writer_ && steps > 0) {  // the final checkpoint, committed before returning
    const double c0 = MonotonicSeconds();
    if (step_ > checkpoint_floor_) COHORT_RETURN_IF_ERROR(Checkpoint(/*next=*/true));
    COHORT_RETURN_IF_ERROR(Checkpoint(/*next=*/false));  // collects the write in flight
    c->ckpt_s += MonotonicSeconds() - c0;
  }
  s->end_step = step_;
  if (scaler_) {
    s->loss_scale = scaler_->scale();
    s->skipped_steps = scaler_->skipped_steps() - skipped_before;
  }
  s->checkpoints_committed = committed_;
  s->checkpoints_written = written_;
  s->checkpoint_write_ms = written_ > 0 ? write_ms_ / static_cast<double>(written_) : 0;
  return Status::Ok();
}

void Trainer::FinishSummary(const RunClock& c, int64_t steps, TrainSummary* s) const {
  // Throughput counts training only; evaluation has its own figure.
  s->samples_per_s =
      static_cast<double>(steps * s->global_batch) / std::max(1e-9, s->train_s - c.eval_s);
  const double per = 1e3 / static_cast<double>(steps);
  s->eval_ms = c.eval_s * per;
  s->step_ms = s->train_s * per;
  s->data_ms = c.data_s * per;
  s->forward_ms = c.times.forward_s * per;
  s->backward_ms = c.times.backward_s * per;
  s->tensor_comm_ms = c.times.tensor_comm_s * per;
  s->allreduce_ms = c.sync_s * per;
  s->optimizer_ms = c.optim_s * per;
  s->allreduce_share = c.sync_s / s->train_s;
  s->allreduce_wait_ms = (sync_ ? c.wait_s : c.sync_s) * per;
  s->checkpoint_ms = c.ckpt_s * per;
  s->optimizer_state_bytes = optimizer_->state_bytes();
}

}  // namespace cohort
