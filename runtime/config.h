#pragma once
// The training configuration: a YAML file, checked strictly. An unknown key, a
// value of the wrong type or range, or a missing required key is an error
// that names the file, the key and its line, and suggests the nearest valid
// key for a misspelling.
//
// Example (examples/mlp.yaml):
//   seed: 42
//   model: {layers: [784, 1024, 1024, 10], activation: relu}
//   optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
//   train: {steps: 300, batch_per_rank: 128}
//   data: {source: synthetic, samples: 60000, teacher_hidden: 64}
//   parallel: {tensor: 1, zero: 0}        # optional
//   elastic: {batch: per_rank, lr: keep}   # optional: cohort launch's resize policy

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "kernels/cpu/kernels.h"

namespace cohort {

struct ModelConfig {
  std::vector<int64_t> layers;  // sizes: input, hidden..., classes; at least 2
  kernels::Activation activation = kernels::Activation::kRelu;
};

enum class OptimizerType { kSgd, kAdamW };

struct OptimizerConfig {
  OptimizerType type = OptimizerType::kSgd;
  float lr = 0.01f;
  float momentum = 0.0f;      // sgd
  bool nesterov = false;      // sgd
  float weight_decay = 0.0f;  // sgd: L2; adamw: decoupled
  float beta1 = 0.9f;         // adamw
  float beta2 = 0.999f;       // adamw
  float eps = 1e-8f;          // adamw
};

// Dynamic loss scaling for fp16 (runtime/loss_scaler.h): the loss is scaled
// by `initial` at first; an overflow in the gradients skips the step and
// multiplies the scale by `backoff`; `growth_interval` clean steps in a row
// multiply it by `growth`. Defaults are torch.cuda.amp.GradScaler's.
inline constexpr double kDefaultLossScale = 65536.0;
inline constexpr double kDefaultLossScaleGrowth = 2.0;
inline constexpr double kDefaultLossScaleBackoff = 0.5;
inline constexpr int64_t kDefaultLossScaleGrowthInterval = 2000;
// Bounds: the scale never falls below kMinLossScale (as DeepSpeed's
// min_loss_scale) nor grows above kMaxLossScale (2^32; fp16 gradients times
// more than that overflow anyway); growth at most kMaxLossScaleGrowth.
inline constexpr double kMinLossScale = 1.0;
inline constexpr double kMaxLossScale = 4294967296.0;
inline constexpr double kMaxLossScaleGrowth = 16.0;
inline constexpr int64_t kMaxLossScaleGrowthInterval = 1000000000;

struct LossScaleConfig {
  double initial = kDefaultLossScale;      // in [kMinLossScale, kMaxLossScale]
  double growth = kDefaultLossScaleGrowth;  // in (1, kMaxLossScaleGrowth]
  double backoff = kDefaultLossScaleBackoff;  // in (0, 1)
  int64_t growth_interval = kDefaultLossScaleGrowthInterval;  // in [1, kMaxLossScaleGrowthInterval]
};

struct TrainConfig {
  int64_t steps = 100;
  int64_t batch_per_rank = 0;  // exactly one of batch_per_rank and global_batch is set
  int64_t global_batch = 0;
  int64_t log_every = 0;       // 0: print progress about once a second
  // Gradient buckets (ZeRO 0): cap in MiB (0: one bucket), a smaller first
  // bucket so communication starts early, and whether a bucket's all-reduce
  // overlaps the rest of backward (on a communication thread).
  double bucket_mb = 0;
  double first_bucket_mb = 1;
  bool overlap = false;
  // Gradient compression on the wire: kF32 (none), kBF16 or kF16. Gradients
  // are scaled by 1/ranks, rounded to 16 bits, summed (in fp32 where the
  // backend can, as shm does) and widened back to fp32 (ZeRO 0 only).
  DType compression = DType::kF32;
  // Compute precision (train.precision): kF32, or kBF16 / kF16 mixed
  // precision with fp32 master weights and optimizer state (runtime/mlp.h).
  DType precision = DType::kF32;
  // fp16 dynamic loss scaling (train.loss_scale; fp16 only).
  LossScaleConfig loss_scale;
  // Where to train (train.device, or `cohort train --device`): "cpu";
  // "cuda" (each rank on the GPU of its local rank, NCCL between them); or
  // "auto" (cuda when every rank has a GPU, else cpu). Not part of the
  // config hash: checkpoints move freely between devices.
  std::string device = "cpu";
};

enum class DataSource { kSynthetic, kShards };

struct DataConfig {
  DataSource source = DataSource::kSynthetic;
  int64_t samples = 60000;     // synthetic: samples in one epoch
  int64_t teacher_hidden = 64; // synthetic: width of the teacher network
  std::string path;            // shards: the directory `cohort data gen` wrote
  // shards: how shards are placed on data-parallel ranks: "modulo" (rank r
  // reads shards r, r+D, ...; exactly balanced) or a consistent scheme from
  // sharding/placement.h (ring, bounded, jump, rendezvous).
  std::string placement = "modulo";
};

struct CheckpointConfig {
  std::string dir;    // empty: no checkpoints
  int64_t every = 0;  // steps between checkpoints (0: only at the end)
  int keep = 3;       // committed checkpoints kept (0: all)
};

struct ParallelConfig {
  int tensor = 1;  // tensor-parallel group size; world = data x tensor
  int zero = 0;    // ZeRO stage: 0 (replicated optimizer state) or 1 (partitioned)
};

// What an elastic job (cohort launch) does when the world changes size.
// Applied at the start of every membership epoch; see runtime/resize_policy.h.
enum class ElasticBatch {
  kPerRank,  // keep the per-rank batch: the global batch follows the world size
  kGlobal,   // keep the global batch: per-rank batch = floor(global / world)
};
enum class ElasticLr {
  kKeep,    // the configured learning rate, whatever the world size
  kLinear,  // lr x (global batch now / global batch at start)
  kSqrt,    // lr x sqrt(global batch now / global batch at start)
};
struct ElasticConfig {
  ElasticBatch batch = ElasticBatch::kPerRank;
  ElasticLr lr = ElasticLr::kKeep;
};

struct Config {
  std::string source;  // the file it came from, for messages
  uint64_t seed = 1;
  ModelConfig model;
  OptimizerConfig optimizer;
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  ElasticConfig elastic;  // optional section `elastic: {batch: per_rank|global, lr: keep|linear|sqrt}`

  // The batch of each data-parallel rank when there are `data_ranks` of them
  // (world / parallel.tensor), or an error when the configured global batch
  // does not divide over them. batch_per_rank is per data-parallel rank.
  Result<int64_t> BatchPerRank(int data_ranks) const;
  // A canonical text of every resolved value; equal configs give equal text.
  std::string Canonical() const;
  // 64-bit hash of Canonical(), compared across ranks.
  uint64_t Hash() const;
};

Result<Config> LoadConfigFile(const std::string& path);
// `origin` names the text in messages (a file path, or "<string>").
Result<Config> ParseConfig(const std::string& yaml_text, const std::string& origin);

}  // namespace cohort
