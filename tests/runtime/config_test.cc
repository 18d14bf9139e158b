#include "runtime/config.h"

#include <gtest/gtest.h>

namespace cohort {
namespace {

const char* kGood = R"(
seed: 7
model:
  layers: [784, 64, 10]
  activation: gelu
optimizer:
  type: sgd
  lr: 0.1
  momentum: 0.9
train:
  steps: 20
  global_batch: 256
data:
  source: synthetic
  samples: 1024
)";

TEST(Config, ParsesAGoodFile) {
  auto c = ParseConfig(kGood, "good.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->seed, 7u);
  EXPECT_EQ(c->model.layers, (std::vector<int64_t>{784, 64, 10}));
  EXPECT_EQ(c->model.activation, kernels::Activation::kGelu);
  EXPECT_FLOAT_EQ(c->optimizer.momentum, 0.9f);
  EXPECT_EQ(*c->BatchPerRank(4), 64);
  EXPECT_FALSE(c->BatchPerRank(3).ok());
  EXPECT_NE(
      c->BatchPerRank(3).status().message().find("does not divide over 3 data-parallel ranks"),
      std::string::npos);
}

void ExpectError(const std::string& yaml, const std::string& needle) {
  auto c = ParseConfig(yaml, "bad.yaml");
  ASSERT_FALSE(c.ok()) << "accepted:\n" << yaml;
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("bad.yaml"), std::string::npos) << "names the file";
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  auto p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  return s.replace(p, from.size(), to);
}

TEST(Config, MistypedKeyIsRefusedWithSuggestionAndLine) {
  ExpectError(Replace(kGood, "momentum: 0.9", "momentun: 0.9"),
              "unknown key 'optimizer.momentun' (did you mean 'optimizer.momentum'?)");
  ExpectError(Replace(kGood, "momentum: 0.9", "momentun: 0.9"), "bad.yaml:9:");
  ExpectError(Replace(kGood, "seed: 7", "sed: 7"), "did you mean 'seed'");
  ExpectError(std::string(kGood) + "extra_section: {}\n", "unknown key 'extra_section'");
}

TEST(Config, WrongTypesAndRanges) {
  ExpectError(Replace(kGood, "steps: 20", "steps: twenty"), "'train.steps' must be an integer");
  ExpectError(Replace(kGood, "steps: 20", "steps: -1"), "must be positive");
  ExpectError(Replace(kGood, "lr: 0.1", "lr: 0"), "'optimizer.lr' must be positive");
  ExpectError(Replace(kGood, "[784, 64, 10]", "[784]"), "at least two sizes");
  ExpectError(Replace(kGood, "activation: gelu", "activation: tanh"), "relu or gelu");
  ExpectError(Replace(kGood, "type: sgd", "type: adam"), "sgd or adamw");
  ExpectError(Replace(kGood, "source: synthetic", "source: web"),
              "synthetic, shards, tokens or idx");
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  batch_per_rank: 4"),
              "exactly one");
  ExpectError(Replace(kGood, "  lr: 0.1\n", ""), "missing required key 'optimizer.lr'");
  ExpectError(Replace(kGood, "  momentum: 0.9\n", "  beta1: 0.9\n"), "applies to adamw only");
  ExpectError("model: [1, 2\n", "not valid YAML");
  ExpectError("", "empty");
}

TEST(Config, CompressionValuesAndTheZeroConflict) {
  auto c = ParseConfig(
      Replace(kGood, "global_batch: 256", "global_batch: 256\n  compression: bf16"), "c.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->train.compression, DType::kBF16);
  EXPECT_EQ(ParseConfig(kGood, "g.yaml")->train.compression, DType::kF32);
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  compression: int8"),
              "'train.compression' must be none, bf16 or fp16, not 'int8'");
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  compression: fp16") +
                  "parallel:\n  zero: 1\n",
              "'train.compression' works with parallel.zero 0 only");
}

const char* kGpt = R"(
seed: 3
model: {type: gpt, vocab: 256, context: 64, layers: 2, heads: 4, width: 32}
optimizer: {type: adamw, lr: 0.001}
train:
  steps: 100
  batch_per_rank: 4
  clip_grad_norm: 1.0
  lr_schedule: {warmup_steps: 10, decay: cosine, min_lr: 0.0001}
  eval_every: 50
  eval_batches: 4
data: {source: tokens, path: /tmp/tok}
)";

TEST(Config, ParsesAGpt) {
  auto c = ParseConfig(kGpt, "gpt.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model.type, ModelType::kGpt);
  EXPECT_EQ(c->model.gpt.vocab, 256);
  EXPECT_EQ(c->model.gpt.context, 64);
  EXPECT_EQ(c->model.gpt.layers, 2);
  EXPECT_EQ(c->model.gpt.heads, 4);
  EXPECT_EQ(c->model.gpt.width, 32);
  EXPECT_EQ(c->data.source, DataSource::kTokens);
  EXPECT_EQ(c->train.lr_schedule.decay, LrDecay::kCosine);
  EXPECT_EQ(c->train.lr_schedule.warmup_steps, 10);
  EXPECT_FLOAT_EQ(c->train.clip_grad_norm, 1.0f);
  EXPECT_EQ(c->train.eval_every, 50);
  EXPECT_EQ(c->train.eval_batches, 4);
  EXPECT_EQ(DescribeModel(c->model), "gpt vocab 256, context 64, 2 layers, 4 heads, width 32");
  // The hash sees the new keys; an MLP config's hash has no trace of them.
  auto other = ParseConfig(Replace(kGpt, "clip_grad_norm: 1.0", "clip_grad_norm: 0.5"), "gpt.yaml");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(c->Hash(), other->Hash());
  auto mlp = ParseConfig(kGood, "good.yaml");
  ASSERT_TRUE(mlp.ok());
  EXPECT_EQ(mlp->Canonical().find("gpt"), std::string::npos);
  EXPECT_EQ(mlp->Canonical().find("lr_schedule"), std::string::npos);
}

TEST(Config, GptAndScheduleErrors) {
  ExpectError(Replace(kGpt, "heads: 4", "heads: 5"),
              "'model.heads' 5 must divide 'model.width' 32");
  ExpectError(Replace(kGpt, "vocab: 256, ", ""), "missing required key 'model.vocab'");
  ExpectError(Replace(kGpt, "width: 32", "width: 0"), "'model.width' must be in [1, 65536], not 0");
  ExpectError(Replace(kGpt, "type: gpt", "type: rnn"), "'model.type' must be mlp or gpt");
  ExpectError(Replace(kGpt, "heads: 4", "heads: 4, activation: relu"),
              "unknown key 'model.activation'");
  ExpectError(Replace(kGpt, "decay: cosine", "decay: exp"), "must be cosine, linear or none");
  ExpectError(Replace(kGpt, "warmup_steps: 10", "warmup_steps: -1"),
              "'train.lr_schedule.warmup_steps' must be >= 0");
  ExpectError(Replace(kGpt, "min_lr: 0.0001", "min_lr: -1"),
              "'train.lr_schedule.min_lr' must be >= 0");
  ExpectError(Replace(kGpt, "clip_grad_norm: 1.0", "clip_grad_norm: -1"),
              "'train.clip_grad_norm' must be >= 0");
  ExpectError(Replace(kGpt, "eval_batches: 4", "eval_batches: 0"),
              "'train.eval_batches' must be in [1, 100000]");
  ExpectError(Replace(kGpt, "data: {source: tokens, path: /tmp/tok}", "data: {source: synthetic}"),
              "model.type gpt trains on token files");
  ExpectError(Replace(kGpt, "data: {source: tokens, path: /tmp/tok}", "data: {source: tokens}"),
              "missing required key 'data.path'");
  ExpectError(
      Replace(kGood, "source: synthetic\n  samples: 1024", "source: tokens\n  path: /tmp/t"),
      "data.source tokens feeds a model of type gpt");
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  eval_every: 10"),
              "'train.eval_every' needs a held-out split");
}

TEST(Config, LearningRateSchedule) {
  // Step s is 0-based; train.steps 100, peak 1.0.
  LrSchedule none;
  EXPECT_FLOAT_EQ(ScheduledLr(none, 1.0f, 0, 100), 1.0f);
  EXPECT_FLOAT_EQ(ScheduledLr(none, 1.0f, 99, 100), 1.0f);
  LrSchedule warm{10, LrDecay::kNone, 0.0f};
  EXPECT_FLOAT_EQ(ScheduledLr(warm, 1.0f, 0, 100), 0.1f);  // (s + 1) / warmup
  EXPECT_FLOAT_EQ(ScheduledLr(warm, 1.0f, 9, 100), 1.0f);
  EXPECT_FLOAT_EQ(ScheduledLr(warm, 1.0f, 50, 100), 1.0f);
  LrSchedule cosine{10, LrDecay::kCosine, 0.1f};
  EXPECT_FLOAT_EQ(ScheduledLr(cosine, 1.0f, 10, 100), 1.0f);     // decay starts at the peak
  EXPECT_NEAR(ScheduledLr(cosine, 1.0f, 55, 100), 0.55f, 1e-6);  // halfway: (max + min) / 2
  EXPECT_NEAR(ScheduledLr(cosine, 1.0f, 100, 100), 0.1f, 1e-6);  // min_lr at train.steps
  EXPECT_NEAR(ScheduledLr(cosine, 1.0f, 500, 100), 0.1f, 1e-6);  // and after (a longer resumed run)
  LrSchedule linear{0, LrDecay::kLinear, 0.0f};
  EXPECT_FLOAT_EQ(ScheduledLr(linear, 2.0f, 0, 100), 2.0f);
  EXPECT_FLOAT_EQ(ScheduledLr(linear, 2.0f, 25, 100), 1.5f);
  EXPECT_FLOAT_EQ(ScheduledLr(linear, 2.0f, 100, 100), 0.0f);
}

TEST(Config, MissingFileIsNotFound) {
  auto c = LoadConfigFile("/nonexistent/cohort.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/cohort.yaml"), std::string::npos);
}

TEST(Config, HashTracksEveryValue) {
  auto a = ParseConfig(kGood, "a.yaml");
  auto b = ParseConfig(Replace(kGood, "lr: 0.1", "lr: 0.10"), "b.yaml");
  auto c = ParseConfig(Replace(kGood, "lr: 0.1", "lr: 0.11"), "c.yaml");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->Hash(), b->Hash()) << "same values, different spelling and file";
  EXPECT_NE(a->Hash(), c->Hash());
}

}  // namespace
}  // namespace cohort
