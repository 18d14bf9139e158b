#include "sharding/shard_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace cohort {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

ShardCmdOptions Small() {
  ShardCmdOptions o;
  o.workers = 16;
  o.shards = 5000;
  return o;
}

TEST(ShardCommandTest, JsonIsOneObjectWithEveryScheme) {
  ShardCmdOptions o = Small();
  o.join = 1;
  o.json = true;
  std::ostringstream out, err;
  ASSERT_EQ(RunShardCommand(o, out, err), 0) << err.str();
  EXPECT_EQ(err.str(), "");
  const nlohmann::json doc = nlohmann::json::parse(out.str());  // throws (fails) on extra text
  EXPECT_EQ(doc["workers"], 16);
  EXPECT_EQ(doc["shards"], 5000);
  for (const char* name : {"ring", "bounded", "jump", "rendezvous"}) {
    ASSERT_TRUE(doc["schemes"].contains(name)) << name;
    const auto& s = doc["schemes"][name];
    for (const char* key : {"max_over_mean", "min", "mean", "max", "moved", "moved_fraction",
                            "ideal_moved_fraction", "lookups_per_s"}) {
      EXPECT_TRUE(s.contains(key)) << name << "." << key;
    }
    EXPECT_DOUBLE_EQ(s["mean"].get<double>(), 5000.0 / 16);
    EXPECT_DOUBLE_EQ(s["ideal_moved_fraction"].get<double>(), 1.0 / 17);
    EXPECT_GT(s["moved"].get<int64_t>(), 0);
    EXPECT_GT(s["lookups_per_s"].get<double>(), 0);
  }
}

TEST(ShardCommandTest, TableNamesEachScheme) {
  ShardCmdOptions o = Small();
  o.leave = 2;
  std::ostringstream out, err;
  ASSERT_EQ(RunShardCommand(o, out, err), 0) << err.str();
  for (const char* name : {"ring", "bounded", "jump", "rendezvous", "max/mean", "moved%"}) {
    EXPECT_THAT(out.str(), HasSubstr(name));
  }
}

TEST(ShardCommandTest, OneScheme) {
  ShardCmdOptions o = Small();
  o.scheme = "rendezvous";
  o.json = true;
  std::ostringstream out, err;
  ASSERT_EQ(RunShardCommand(o, out, err), 0);
  const auto doc = nlohmann::json::parse(out.str());
  EXPECT_EQ(doc["schemes"].size(), 1u);
  EXPECT_EQ(doc["schemes"]["rendezvous"]["moved"], 0);
}

void ExpectError(const ShardCmdOptions& o, const std::string& what) {
  std::ostringstream out, err;
  EXPECT_EQ(RunShardCommand(o, out, err), 2);
  EXPECT_EQ(out.str(), "");
  const std::string message = err.str();
  EXPECT_THAT(message, StartsWith("cohort shard: error: "));
  EXPECT_THAT(message, HasSubstr(what));
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 1) << message;
  EXPECT_EQ(message.back(), '\n');
}

TEST(ShardCommandTest, BadOptionsExitTwoWithOneLine) {
  ShardCmdOptions o = Small();
  o.workers = 0;
  ExpectError(o, "--workers must be at least 1");
  o = Small();
  o.shards = 8;
  ExpectError(o, "more workers (16) than shards (8)");
  o = Small();
  o.leave = 16;
  ExpectError(o, "would leave no worker");
  o = Small();
  o.scheme = "maglev";
  ExpectError(o, "valid: all, ring, bounded, jump, rendezvous");
  o = Small();
  o.vnodes = 0;
  ExpectError(o, "vnodes");
  o = Small();
  o.eps = -1;
  o.scheme = "bounded";
  ExpectError(o, "epsilon");
  o = Small();
  o.join = -1;
  ExpectError(o, "--join");
}

}  // namespace
}  // namespace cohort
