// The job config that launchers write and the job controller reads
// (coordinator/controller/job_controller.h): round trip, errors that name the
// field, and the difference a second launcher is refused with.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "coordinator/controller/job_controller.h"

namespace cohort::coordinator {
namespace {

JobConfig Sample() {
  JobConfig c;
  c.job = "train-7";
  c.min = 2;
  c.max = 6;
  c.join_grace = std::chrono::milliseconds(2500);
  c.probe_interval = std::chrono::milliseconds(50);
  c.probe_deadline = std::chrono::milliseconds(120);
  c.failure_threshold = 3;
  c.phi_threshold = 6.5;
  c.health_pause = std::chrono::milliseconds(1500);
  c.cooldown = std::chrono::milliseconds(700);
  return c;
}

TEST(JobConfig, RoundTripsThroughJson) {
  const JobConfig c = Sample();
  auto back = JobConfig::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Diff(c), "");
  EXPECT_EQ(back->job, "train-7");
  EXPECT_EQ(back->max, 6);
  EXPECT_EQ(back->probe_deadline.count(), 120);
  EXPECT_DOUBLE_EQ(back->phi_threshold, 6.5);
}

TEST(JobConfig, ErrorsNameTheField) {
  auto j = nlohmann::json::parse(Sample().ToJson());
  j.erase("probe_interval_ms");
  auto r = JobConfig::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("'probe_interval_ms' is missing"), std::string::npos)
      << r.status().message();

  j = nlohmann::json::parse(Sample().ToJson());
  j["max"] = 1;  // below min 2
  r = JobConfig::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'max' is 1, not in [2,"), std::string::npos)
      << r.status().message();

  j = nlohmann::json::parse(Sample().ToJson());
  j["failure_threshold"] = "four";
  r = JobConfig::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'failure_threshold' is not an integer"), std::string::npos);

  r = JobConfig::FromJson("[1,2]");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a JSON object"), std::string::npos);
  r = JobConfig::FromJson(std::string(kMaxJobConfigBytes + 1, ' '));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("over the limit"), std::string::npos);
}

TEST(JobConfig, DiffListsEveryDifference) {
  JobConfig a = Sample(), b = Sample();
  b.min = 3;
  b.cooldown = std::chrono::milliseconds(900);
  EXPECT_EQ(a.Diff(b), "min 2 vs 3, cool-down 700 ms vs 900 ms");
}

// One row per rule: the field set to a bad value, and the text the error
// must hold (it names the field). The same check serves `cohort launch`'s
// flags (runtime/elastic/launcher.cc, CheckLaunchOptions) and the JSON the controller reads.
TEST(ValidateJobConfig, Table) {
  using Ms = std::chrono::milliseconds;
  struct Row {
    const char* name;
    void (*set)(JobConfig&);
    const char* want;  // "" = valid
  };
  const Row rows[] = {
      {"sample", [](JobConfig&) {}, ""},
      {"defaults", [](JobConfig& c) { c = JobConfig{}; }, ""},
      {"min = max", [](JobConfig& c) { c.min = c.max = 4; }, ""},
      {"bounds",
       [](JobConfig& c) {
         c.min = 1;
         c.max = kMaxJobMembers;
         c.join_grace = Ms(0);
         c.probe_interval = kMinProbeInterval;
         c.probe_deadline = Ms(1);
         c.failure_threshold = kMaxFailureThreshold;
         c.health_pause = kMaxHealthPause;
         c.cooldown = kMaxCooldown;
       },
       ""},
      {"empty job", [](JobConfig& c) { c.job = ""; }, "field 'job' must be a non-empty string"},
      {"min 0", [](JobConfig& c) { c.min = 0; }, "field 'min' is 0, not in [1, 1048576]"},
      {"min negative", [](JobConfig& c) { c.min = -3; }, "field 'min' is -3, not in [1,"},
      {"max below min", [](JobConfig& c) { c.max = 1; }, "field 'max' is 1, not in [2, 1048576]"},
      {"max too large", [](JobConfig& c) { c.max = kMaxJobMembers + 1; }, "field 'max' is 1048577"},
      {"negative grace", [](JobConfig& c) { c.join_grace = Ms(-1); },
       "field 'join_grace_ms' is -1"},
      {"grace over an hour", [](JobConfig& c) { c.join_grace = kMaxJoinGrace + Ms(1); },
       "field 'join_grace_ms' is 3600001, not in [0, 3600000]"},
      {"probe interval too short", [](JobConfig& c) { c.probe_interval = Ms(9); },
       "field 'probe_interval_ms' is 9, not in [10, 60000]"},
      {"probe interval too long", [](JobConfig& c) { c.probe_interval = Ms(60001); },
       "field 'probe_interval_ms' is 60001"},
      {"probe deadline 0", [](JobConfig& c) { c.probe_deadline = Ms(0); },
       "field 'probe_deadline_ms' is 0, not in [1, 60000]"},
      {"failure threshold 0", [](JobConfig& c) { c.failure_threshold = 0; },
       "field 'failure_threshold' is 0, not in [1, 1000]"},
      {"failure threshold too large", [](JobConfig& c) { c.failure_threshold = 1001; },
       "field 'failure_threshold' is 1001"},
      {"negative pause", [](JobConfig& c) { c.health_pause = Ms(-5); },
       "field 'health_pause_ms' is -5, not in [0, 3600000]"},
      {"cooldown 0", [](JobConfig& c) { c.cooldown = Ms(0); },
       "field 'cooldown_ms' is 0, not in [1, 60000]"},
      {"cooldown too long", [](JobConfig& c) { c.cooldown = kMaxCooldown + Ms(1); },
       "field 'cooldown_ms' is 60001"},
      {"phi 0", [](JobConfig& c) { c.phi_threshold = 0; },
       "field 'phi_threshold' must be positive"},
      {"phi negative", [](JobConfig& c) { c.phi_threshold = -1; },
       "'phi_threshold' must be positive"},
  };
  for (const Row& row : rows) {
    JobConfig c = Sample();
    row.set(c);
    const Status s = ValidateJobConfig(c);
    if (std::string(row.want).empty()) {
      EXPECT_TRUE(s.ok()) << row.name << ": " << s.ToString();
      // What validates also survives the JSON the controller reads.
      auto back = JobConfig::FromJson(c.ToJson());
      EXPECT_TRUE(back.ok()) << row.name << ": " << back.status().ToString();
      continue;
    }
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << row.name;
    EXPECT_NE(s.message().find(row.want), std::string::npos) << row.name << ": " << s.message();
    // The JSON reader refuses it with the same words, in the config's context.
    auto r = JobConfig::FromJson(c.ToJson());
    ASSERT_FALSE(r.ok()) << row.name;
    EXPECT_EQ(r.status().message().rfind("job config (cohort/job-config): ", 0), 0u)
        << r.status().message();
    EXPECT_NE(r.status().message().find(row.want), std::string::npos) << r.status().message();
  }
}

TEST(ValidateJobConfig, PhiNotANumber) {
  JobConfig c = Sample();
  c.phi_threshold = std::nan("");
  EXPECT_NE(ValidateJobConfig(c).message().find("'phi_threshold' must be positive"),
            std::string::npos);
}

TEST(JobConfig, IntegersOutsideIntAreRefused) {
  auto j = nlohmann::json::parse(Sample().ToJson());
  j["min"] = int64_t{1} << 40;
  auto r = JobConfig::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'min' is 1099511627776, out of range"), std::string::npos)
      << r.status().message();
}

TEST(JobKeys, AreUnderTheJobPrefix) {
  EXPECT_EQ(DoneKey("j"), "j/done");
  EXPECT_EQ(ReformKey("j", 4), "j/reform/4");
  EXPECT_EQ(HealthKey("j", "h-1-w0"), "j/health/h-1-w0");
  EXPECT_EQ(StepKey("j", "h-1-w0"), "j/step/h-1-w0");
  EXPECT_EQ(ResumedKey("j", 7), "j/resumed/7");
  EXPECT_EQ(ResumedKey("j", 7).rfind(ResumedPrefix("j"), 0), 0u);
  EXPECT_EQ(CheckpointHistoryKey("j"), "j/checkpoints");
  EXPECT_EQ(EpochStorePrefix("j", 3), "j/epoch-3");
  EXPECT_STREQ(kJobConfigKey, "cohort/job-config");
}

}  // namespace
}  // namespace cohort::coordinator
