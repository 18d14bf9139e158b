#include "coordinator/controller/job_config.h"

#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "coordinator/controller/job_keys.h"

namespace cohort::coordinator {

using Ms = std::chrono::milliseconds;

namespace {

Status OutOfRange(const std::string& field, const std::string& value, int64_t lo, int64_t hi) {
  return InvalidArgument("field '" + field + "' is " + value + ", not in [" + std::to_string(lo) +
                         ", " + std::to_string(hi) + "]");
}

Status CheckRange(const char* field, int64_t v, int64_t lo, int64_t hi) {
  return v < lo || v > hi ? OutOfRange(field, std::to_string(v), lo, hi) : Status::Ok();
}

}  // namespace

Status ValidateJobConfig(const JobConfig& c) {
  if (c.job.empty()) return InvalidArgument("field 'job' must be a non-empty string");
  COHORT_RETURN_IF_ERROR(CheckRange("min", c.min, 1, kMaxJobMembers));
  COHORT_RETURN_IF_ERROR(CheckRange("max", c.max, c.min, kMaxJobMembers));
  COHORT_RETURN_IF_ERROR(
      CheckRange("join_grace_ms", c.join_grace.count(), 0, kMaxJoinGrace.count()));
  COHORT_RETURN_IF_ERROR(CheckRange("probe_interval_ms", c.probe_interval.count(),
                                    kMinProbeInterval.count(), kMaxProbeInterval.count()));
  COHORT_RETURN_IF_ERROR(
      CheckRange("probe_deadline_ms", c.probe_deadline.count(), 1, kMaxProbeInterval.count()));
  COHORT_RETURN_IF_ERROR(
      CheckRange("failure_threshold", c.failure_threshold, 1, kMaxFailureThreshold));
  COHORT_RETURN_IF_ERROR(
      CheckRange("health_pause_ms", c.health_pause.count(), 0, kMaxHealthPause.count()));
  COHORT_RETURN_IF_ERROR(CheckRange("cooldown_ms", c.cooldown.count(), 1, kMaxCooldown.count()));
  if (!(c.phi_threshold > 0)) return InvalidArgument("field 'phi_threshold' must be positive");
  return Status::Ok();
}

std::string JobConfig::ToJson() const {
  nlohmann::json j = {{"job", job},
                      {"min", min},
                      {"max", max},
                      {"join_grace_ms", join_grace.count()},
                      {"probe_interval_ms", probe_interval.count()},
                      {"probe_deadline_ms", probe_deadline.count()},
                      {"failure_threshold", failure_threshold},
                      {"phi_threshold", phi_threshold},
                      {"health_pause_ms", health_pause.count()},
                      {"cooldown_ms", cooldown.count()}};
  return j.dump();
}

Result<JobConfig> JobConfig::FromJson(const std::string& text) {
  const std::string context = "job config (" + std::string(kJobConfigKey) + ")";
  if (text.size() > kMaxJobConfigBytes) {
    return InvalidArgument(context + ": " + std::to_string(text.size()) +
                           " bytes, over the limit of " + std::to_string(kMaxJobConfigBytes));
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument(context + " is not a JSON object");
  auto bad = [&](const std::string& field, const std::string& why) {
    return InvalidArgument(context + ": field '" + field + "' " + why);
  };
  // The types here; the ranges are ValidateJobConfig's.
  auto integer = [&](const char* field) -> Result<int64_t> {
    if (!j.contains(field)) return bad(field, "is missing");
    if (!j[field].is_number_integer()) return bad(field, "is not an integer");
    return j[field].get<int64_t>();
  };
  auto small = [&](const char* field, int* out) -> Status {
    COHORT_ASSIGN_OR_RETURN(int64_t v, integer(field));
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
      return bad(field, "is " + std::to_string(v) + ", out of range");
    }
    *out = static_cast<int>(v);
    return Status::Ok();
  };
  auto ms = [&](const char* field, Ms* out) -> Status {
    COHORT_ASSIGN_OR_RETURN(int64_t v, integer(field));
    *out = Ms(v);
    return Status::Ok();
  };
  JobConfig c;
  if (!j.contains("job") || !j["job"].is_string()) return bad("job", "must be a non-empty string");
  c.job = j["job"].get<std::string>();
  COHORT_RETURN_IF_ERROR(small("min", &c.min));
  COHORT_RETURN_IF_ERROR(small("max", &c.max));
  COHORT_RETURN_IF_ERROR(ms("join_grace_ms", &c.join_grace));
  COHORT_RETURN_IF_ERROR(ms("probe_interval_ms", &c.probe_interval));
  COHORT_RETURN_IF_ERROR(ms("probe_deadline_ms", &c.probe_deadline));
  COHORT_RETURN_IF_ERROR(small("failure_threshold", &c.failure_threshold));
  COHORT_RETURN_IF_ERROR(ms("health_pause_ms", &c.health_pause));
  COHORT_RETURN_IF_ERROR(ms("cooldown_ms", &c.cooldown));
  if (!j.contains("phi_threshold") || !j["phi_threshold"].is_number())
    return bad("phi_threshold", "is missing or not a number");
  c.phi_threshold = j["phi_threshold"].get<double>();
  COHORT_RETURN_IF_ERROR(ValidateJobConfig(c).WithContext(context));
  return c;
}

std::string JobConfig::Diff(const JobConfig& o) const {
  std::string out;
  auto add = [&](const char* name, const std::string& a, const std::string& b) {
    if (a == b) return;
    out += std::string(out.empty() ? "" : ", ") + name + " " + a + " vs " + b;
  };
  auto ms = [](Ms m) { return std::to_string(m.count()) + " ms"; };
  char pa[32], pb[32];
  std::snprintf(pa, sizeof(pa), "%g", phi_threshold);
  std::snprintf(pb, sizeof(pb), "%g", o.phi_threshold);
  add("job", job, o.job);
  add("min", std::to_string(min), std::to_string(o.min));
  add("max", std::to_string(max), std::to_string(o.max));
  add("join grace", ms(join_grace), ms(o.join_grace));
  add("probe interval", ms(probe_interval), ms(o.probe_interval));
  add("probe deadline", ms(probe_deadline), ms(o.probe_deadline));
  add("failure threshold", std::to_string(failure_threshold), std::to_string(o.failure_threshold));
  add("phi threshold", pa, pb);
  add("health pause", ms(health_pause), ms(o.health_pause));
  add("cool-down", ms(cooldown), ms(o.cooldown));
  return out;
}

}  // namespace cohort::coordinator
