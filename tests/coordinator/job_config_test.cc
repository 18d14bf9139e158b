// The job config that launchers write and the job controller reads
// (coordinator/controller/job_controller.h): round trip, errors that name the
// field, and the difference a second launcher is refused with.
#include <gtest/gtest.h>

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
  EXPECT_NE(r.status().message().find("'probe_interval_ms' is missing"), std::string::npos) << r.status().message();

  j = nlohmann::json::parse(Sample().ToJson());
  j["max"] = 1;  // below min 2
  r = JobConfig::FromJson(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'max' is 1, not in [2,"), std::string::npos) << r.status().message();

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

TEST(JobKeys, AreUnderTheJobPrefix) {
  EXPECT_EQ(DoneKey("j"), "j/done");
  EXPECT_EQ(ReformKey("j", 4), "j/reform/4");
  EXPECT_EQ(HealthKey("j", "h-1-w0"), "j/health/h-1-w0");
  EXPECT_EQ(StepKey("j", "h-1-w0"), "j/step/h-1-w0");
}

}  // namespace
}  // namespace cohort::coordinator
