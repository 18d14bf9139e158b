#include "runtime/resize_policy.h"

#include <cmath>
#include <string>

namespace cohort {

Result<ResizeDecision> PlanResize(const ElasticConfig& policy, int64_t start_batch_per_rank,
                                  int start_world, int world, double lr) {
  if (start_batch_per_rank < 1 || start_world < 1 || world < 1) {
    return InvalidArgument("resize policy: batch per rank " + std::to_string(start_batch_per_rank) +
                           ", start world " + std::to_string(start_world) + " and world " +
                           std::to_string(world) + " must all be at least 1");
  }
  const int64_t g0 = start_batch_per_rank * start_world;
  ResizeDecision d;
  if (policy.batch == ElasticBatch::kPerRank) {
    d.batch_per_rank = start_batch_per_rank;
  } else {
    if (g0 < world) {
      return InvalidArgument("elastic.batch global: the global batch of " + std::to_string(g0) +
                             " gives no sample to each of " + std::to_string(world) +
                             " ranks; raise train.global_batch or use elastic.batch per_rank");
    }
    d.batch_per_rank = g0 / world;
    d.rounded = g0 % world != 0;
  }
  d.global_batch = d.batch_per_rank * world;
  const double ratio = static_cast<double>(d.global_batch) / static_cast<double>(g0);
  switch (policy.lr) {
    case ElasticLr::kKeep:
      d.lr_scale = 1;
      break;
    case ElasticLr::kLinear:
      d.lr_scale = ratio;
      break;
    case ElasticLr::kSqrt:
      d.lr_scale = std::sqrt(ratio);
      break;
  }
  d.lr = lr * d.lr_scale;
  return d;
}

}  // namespace cohort
