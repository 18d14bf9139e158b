#pragma once
// The training configuration: a YAML file, checked strictly. An unknown key, a
// value of the wrong type or range, or a missing required key is an error
// that names the file, the key and its line, and suggests the nearest valid
// key for a misspelling.
//
// Example (examples/mlp.yaml):
//   seed: 42
//   model: {layers: [784, 1024, 1024, 10], activation: relu}
//     or {type: gpt, vocab: 256, context: 256, layers: 6, heads: 6, width: 384}
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

enum class ModelType { kMlp, kGpt };

// A GPT-2 style transformer (runtime/gpt.h):
// model: {type: gpt, vocab, context, layers, heads, width}.
struct GptConfig {
  int64_t vocab = 256;    // token ids lie in [0, vocab)
  int64_t context = 256;  // positions (the learned position table's rows)
  int64_t layers = 6;     // transformer blocks
  int64_t heads = 6;      // attention heads; divides width
  int64_t width = 384;    // the residual stream's width (n_embd)
};

struct ModelConfig {
  ModelType type = ModelType::kMlp;
  std::vector<int64_t> layers;  // mlp: sizes: input, hidden..., classes; at least 2
  kernels::Activation activation = kernels::Activation::kRelu;  // mlp
  GptConfig gpt;                                                // gpt
};

// Whether two model configs have the same parameters (a checkpoint of one
// restores into the other; the MLP's activation does not count).
bool SameArchitecture(const ModelConfig& a, const ModelConfig& b);
// "mlp 784-1024-10" or "gpt vocab 256, context 256, 6 layers, 6 heads, width 384".
std::string DescribeModel(const ModelConfig& m);

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
  double initial = kDefaultLossScale;                         // in [kMinLossScale, kMaxLossScale]
  double growth = kDefaultLossScaleGrowth;                    // in (1, kMaxLossScaleGrowth]
  double backoff = kDefaultLossScaleBackoff;                  // in (0, 1)
  int64_t growth_interval = kDefaultLossScaleGrowthInterval;  // in [1, kMaxLossScaleGrowthInterval]
};

// The learning rate over the steps (train.lr_schedule): a linear warm-up
// from 0 over `warmup_steps`, then a decay from optimizer.lr to `min_lr` at
// train.steps. Step s (0-based) uses
//   s < warmup:  lr * (s + 1) / warmup
//   otherwise:   p = (s - warmup) / max(1, steps - warmup), clamped to [0, 1];
//                cosine: min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2
//                linear: lr - (lr - min_lr) * p;   none: lr.
// A pure function of the global step, so a resumed run repeats an
// uninterrupted one.
enum class LrDecay { kNone, kCosine, kLinear };
struct LrSchedule {
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::kNone;
  float min_lr = 0.0f;
};
// The learning rate of 0-based global step `step` of a run of `steps` with peak `lr`.
float ScheduledLr(const LrSchedule& schedule, float lr, int64_t step, int64_t steps);

struct TrainConfig {
  int64_t steps = 100;
  int64_t batch_per_rank = 0;  // exactly one of batch_per_rank and global_batch is set
  int64_t global_batch = 0;
  int64_t log_every = 0;  // 0: print progress about once a second
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
  LrSchedule lr_schedule;  // default: constant optimizer.lr
  // Clip the whole model's gradient norm (over every rank's part) to this;
  // 0: no clipping (torch.nn.utils.clip_grad_norm_'s max_norm).
  float clip_grad_norm = 0.0f;
  // Evaluate the validation split every `eval_every` steps (0: never; also
  // once at the end when set) over `eval_batches` batches of
  // batch_per_rank samples per data rank.
  int64_t eval_every = 0;
  int64_t eval_batches = 8;
};

enum class DataSource { kSynthetic, kShards, kTokens, kIdx };

struct DataConfig {
  DataSource source = DataSource::kSynthetic;
  int64_t samples = 60000;      // synthetic: samples in one epoch
  int64_t teacher_hidden = 64;  // synthetic: width of the teacher network
  std::string path;             // shards: the directory `cohort data gen` wrote;
                                // tokens: the token files (runtime/data/tokens.h)
  // idx: the four IDX files of an MNIST-style dataset (runtime/data/idx.h)
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
  std::string text;    // the YAML it was parsed from (checkpoints keep it for `cohort eval`)
  uint64_t seed = 1;
  ModelConfig model;
  OptimizerConfig optimizer;
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  ElasticConfig
      elastic;  // optional section `elastic: {batch: per_rank|global, lr: keep|linear|sqrt}`

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
