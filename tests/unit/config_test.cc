#include <gtest/gtest.h>

#include "runtime/config.h"

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
  EXPECT_NE(c->BatchPerRank(3).status().message().find("does not divide over 3 data-parallel ranks"), std::string::npos);
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
  ExpectError(Replace(kGood, "momentum: 0.9", "momentun: 0.9"), "unknown key 'optimizer.momentun' (did you mean 'optimizer.momentum'?)");
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
  ExpectError(Replace(kGood, "source: synthetic", "source: web"), "synthetic or shards");
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  batch_per_rank: 4"), "exactly one");
  ExpectError(Replace(kGood, "  lr: 0.1\n", ""), "missing required key 'optimizer.lr'");
  ExpectError(Replace(kGood, "  momentum: 0.9\n", "  beta1: 0.9\n"), "applies to adamw only");
  ExpectError("model: [1, 2\n", "not valid YAML");
  ExpectError("", "empty");
}

TEST(Config, CompressionValuesAndTheZeroConflict) {
  auto c = ParseConfig(Replace(kGood, "global_batch: 256", "global_batch: 256\n  compression: bf16"), "c.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->train.compression, DType::kBF16);
  EXPECT_EQ(ParseConfig(kGood, "g.yaml")->train.compression, DType::kF32);
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  compression: int8"),
              "'train.compression' must be none, bf16 or fp16, not 'int8'");
  ExpectError(Replace(kGood, "global_batch: 256", "global_batch: 256\n  compression: fp16") + "parallel:\n  zero: 1\n",
              "'train.compression' works with parallel.zero 0 only");
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
