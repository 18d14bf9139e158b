// The launcher's environment, read by a worker (runtime/elastic/env.h).

#include "runtime/elastic/env.h"

#include <chrono>
#include <cstdlib>

#include "runtime/device_select.h"

namespace cohort::elastic {

namespace {

Result<int64_t> EnvInt(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) {
    return InvalidArgument(std::string(name) + "='" + v + "' is not an integer in [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(x);
}

}  // namespace

Result<std::optional<ElasticEnv>> ElasticEnvFromEnvironment() {
  const char* coord = std::getenv(kEnvCoordinator);
  if (coord == nullptr || *coord == '\0') return std::optional<ElasticEnv>();
  ElasticEnv e;
  e.coordinator = coord;
  const char* token = std::getenv(kEnvTokenFile);
  const char* worker = std::getenv(kEnvWorkerId);
  if (token == nullptr || *token == '\0')
    return InvalidArgument(std::string(kEnvCoordinator) + " is set but " + kEnvTokenFile +
                           " is not");
  if (worker == nullptr || *worker == '\0')
    return InvalidArgument(std::string(kEnvCoordinator) + " is set but " + kEnvWorkerId +
                           " is not");
  e.token_file = token;
  e.worker = worker;
  if (const char* j = std::getenv(kEnvJobId); j != nullptr && *j != '\0') e.job = j;
  if (const char* s = std::getenv(kEnvSummaryFile); s != nullptr) e.summary_file = s;
  // COHORT_LOCAL_RANK first (the launcher always sets it), as every reader of a local rank.
  COHORT_ASSIGN_OR_RETURN(LocalRankInfo lr, LocalRankFromEnv());
  COHORT_ASSIGN_OR_RETURN(int64_t np, EnvInt(kEnvNproc, 1, 1, 1 << 20));
  COHORT_ASSIGN_OR_RETURN(
      int64_t to, EnvInt(kEnvCollectiveTimeoutMs, kDefaultCollectiveTimeout.count(), 100, 3600000));
  COHORT_ASSIGN_OR_RETURN(int64_t se,
                          EnvInt(kEnvSnapshotEvery, kDefaultSnapshotEvery, 1, int64_t{1} << 40));
  e.local_rank = lr.local_rank;
  e.nproc = static_cast<int>(np);
  e.collective_timeout = std::chrono::milliseconds(to);
  e.snapshot_every = se;
  COHORT_ASSIGN_OR_RETURN(int64_t mp, EnvInt(kEnvMetricsPort, -1, -1, 65535));
  e.metrics_port = static_cast<int>(mp);
  if (const char* a = std::getenv(kEnvMetricsAddress); a != nullptr) e.metrics_address = a;
  return std::optional<ElasticEnv>(std::move(e));
}

}  // namespace cohort::elastic
