#pragma once
// The batch and learning-rate policy of an elastic job when its world changes
// size (config section `elastic`, runtime/config.h). Pure functions.
//
// The job starts with `start_world` ranks and `start_batch_per_rank`
// samples per rank, so its starting global batch is G0 = their product.
// In an epoch of `world` ranks:
//   batch per_rank: the per-rank batch stays; the global batch is
//                   start_batch_per_rank x world.
//   batch global:   the global batch G0 stays when it divides over `world`;
//                   when it does not, the per-rank batch is rounded DOWN,
//                   floor(G0 / world), and the global batch is that times
//                   `world` (a little smaller than G0; never larger, so memory
//                   per rank never grows past what the division allows).
//                   InvalidArgument when G0 < world (a rank would get no
//                   sample).
//   lr keep:   the configured learning rate.
//   lr linear: lr x G / G0 (the linear scaling rule, Goyal et al. 2017).
//   lr sqrt:   lr x sqrt(G / G0).
// G is the epoch's actual global batch, after any rounding. Under a
// train.lr_schedule the scale applies to the whole schedule: its peak
// (optimizer.lr) and its floor (min_lr) alike (runtime/elastic/worker.cc).

#include <cstdint>

#include "core/status.h"
#include "runtime/config.h"

namespace cohort {

struct ResizeDecision {
  int64_t batch_per_rank = 0;
  int64_t global_batch = 0;
  double lr = 0;         // the learning rate to train this epoch with
  double lr_scale = 1;   // lr / configured lr
  bool rounded = false;  // batch global: G0 did not divide over the world
};

Result<ResizeDecision> PlanResize(const ElasticConfig& policy, int64_t start_batch_per_rank,
                                  int start_world, int world, double lr);

}  // namespace cohort
