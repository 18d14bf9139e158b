#pragma once
// An elastic job's parameters (JobConfig): what `cohort launch` builds from
// its flags and writes under kJobConfigKey (coordinator/controller/job_keys.h)
// as JSON, and what the job controller reads back. ValidateJobConfig is the
// one check of the values, shared by both sides.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace cohort::coordinator {

// Defaults. A kill -9 refuses the probe's connection at once:
// kDefaultFailureThreshold probes kDefaultProbeInterval apart find it in about
// 0.4 s; a hung worker (SIGSTOP) lets each probe run to its deadline, about
// 4 x (100 + 250) ms = 1.4 s. On a loaded 2-core machine a healthy worker's
// health thread was not seen to miss one 250 ms deadline, let alone four in a
// row; phi (with a 3 s acceptable pause) only backs the probes up.
inline constexpr std::chrono::milliseconds kDefaultProbeInterval{100};
inline constexpr std::chrono::milliseconds kDefaultProbeDeadline{250};
inline constexpr int kDefaultFailureThreshold = 4;
inline constexpr double kDefaultPhiThreshold = 8.0;
inline constexpr std::chrono::milliseconds kDefaultHealthPause{3000};
inline constexpr std::chrono::milliseconds kDefaultCooldown{1000};
inline constexpr std::chrono::milliseconds kDefaultJoinGrace{10000};
// Bounds (ValidateJobConfig).
inline constexpr int kMaxJobMembers = 1 << 20;  // min and max
inline constexpr int kMaxFailureThreshold = 1000;
inline constexpr std::chrono::milliseconds kMaxJoinGrace{3600000};
inline constexpr std::chrono::milliseconds kMaxHealthPause{3600000};
inline constexpr std::chrono::milliseconds kMinProbeInterval{10};
inline constexpr std::chrono::milliseconds kMaxProbeInterval{60000};  // and probe deadline
inline constexpr std::chrono::milliseconds kMaxCooldown{60000};
inline constexpr size_t kMaxJobConfigBytes = 4096;

struct JobConfig {
  std::string job = "job";  // key prefix of the job; not empty
  int min = 1;              // fewest members an epoch may have: [1, kMaxJobMembers]
  int max = 1;              // most members in one epoch: [min, kMaxJobMembers]
  std::chrono::milliseconds join_grace = kDefaultJoinGrace;          // [0, kMaxJoinGrace]
  std::chrono::milliseconds probe_interval = kDefaultProbeInterval;  // [kMin.., kMaxProbeInterval]
  std::chrono::milliseconds probe_deadline = kDefaultProbeDeadline;  // [1 ms, kMaxProbeInterval]
  int failure_threshold = kDefaultFailureThreshold;  // K consecutive failed probes: [1, kMax..]
  double phi_threshold = kDefaultPhiThreshold;       // > 0
  std::chrono::milliseconds health_pause = kDefaultHealthPause;  // phi's acceptable pause
  std::chrono::milliseconds cooldown = kDefaultCooldown;  // first open -> half-open: [1 ms, kMax..]

  std::string ToJson() const;
  // InvalidArgument naming the field that is missing, of the wrong type, or
  // out of range (ValidateJobConfig's rules).
  static Result<JobConfig> FromJson(const std::string& json);
  // Empty when equal; else "min 2 vs 3, ..." (this vs other).
  std::string Diff(const JobConfig& other) const;
};

// OK when every field is in its range (see JobConfig); else InvalidArgument
// "field 'NAME' is VALUE, not in [LO, HI]" (NAME as in the JSON) for the
// first field that is not.
Status ValidateJobConfig(const JobConfig& c);

}  // namespace cohort::coordinator
