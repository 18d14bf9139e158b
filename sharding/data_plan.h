#pragma once
// Data placement for one epoch: which dataset shards each member reads, and in
// which order, such that across the job every shard is read exactly once per
// epoch, also when members leave or join mid-epoch.
//
// Placement (which member owns a shard) comes from a consistent scheme
// (placement.h) and does not depend on the epoch, so a member keeps its shards,
// and its cache of them, from epoch to epoch. Only the order changes: member m
// walks its shards sorted by a priority hash of (shuffle_seed, epoch, m.id,
// shard), a uniformly random permutation that every worker can recompute
// without talking to anyone.
//
// Mid-epoch change: given the shards already consumed this epoch, ReplanEpoch
// places every shard with the new member list, then drops the consumed ones.
// Consumed shards are never read again; every other shard is read exactly
// once, by its new owner. Because the placement is consistent, only shards of
// a member that left (or that a joiner takes) change owner; a member that
// keeps a shard keeps it at the same relative place in its walk (the priority
// hash does not depend on the other members).
//
// All functions are pure (no I/O, no clock, no global state) and thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "sharding/placement.h"

namespace cohort::sharding {

struct DataPlanOptions {
  // A name from PlacementSchemeNames().
  std::string scheme = "ring";
  PlacementOptions placement;
  // Seed of the per-epoch walk order. Same on every worker of a job.
  uint64_t shuffle_seed = 1;
};

struct MemberWalk {
  uint64_t member_id = 0;
  // The shards this member reads this epoch, in reading order. Excludes shards
  // consumed before the plan was made.
  std::vector<int64_t> shards;
};

struct EpochPlan {
  int64_t epoch = 0;
  int64_t num_shards = 0;
  // owner[s]: index into `walks` (and into the member list the plan was made
  // from) of shard s's owner, for every shard including consumed ones.
  std::vector<int32_t> owner;
  // One walk per member, in the order of the member list given.
  std::vector<MemberWalk> walks;
  // Shards consumed before this plan was made, ascending. Disjoint from every
  // walk; together with the walks they cover 0..num_shards-1 exactly once.
  std::vector<int64_t> consumed;
};

// The plan at the start of `epoch` (nothing consumed).
// Errors: InvalidArgument for an unknown scheme, a bad member list or options
// (MakePlacement), epoch < 0, or a bad shard count, including fewer shards
// than members (Placement::Assign).
Result<EpochPlan> PlanEpoch(int64_t num_shards, const std::vector<Member>& members, int64_t epoch,
                            const DataPlanOptions& options);

// The plan for the rest of `epoch` after a membership change, when the shards
// in `consumed` (any order, no duplicates) have already been read.
// Errors: as PlanEpoch, plus InvalidArgument for a consumed shard out of
// [0, num_shards) or listed twice.
Result<EpochPlan> ReplanEpoch(int64_t num_shards, const std::vector<Member>& members, int64_t epoch,
                              const std::vector<int64_t>& consumed, const DataPlanOptions& options);

// The shards consumed once each member of `plan` has read the first
// walked[i] shards of walks[i]: plan.consumed plus those, ascending. This is
// what a coordinator passes to ReplanEpoch after collecting progress.
// Errors: InvalidArgument when walked.size() != plan.walks.size() or some
// walked[i] is negative or beyond its walk.
Result<std::vector<int64_t>> ConsumedAfter(const EpochPlan& plan,
                                           const std::vector<int64_t>& walked);

// Shards not consumed in `after` whose owner id differs between two plans of
// the same shard count. COHORT_CHECKs equal shard counts.
int64_t CountMovedUnconsumed(const EpochPlan& before, const EpochPlan& after);

// The walk priority of `shard` for member `member_id` in `epoch`: members read
// their shards in ascending priority (ties by shard index).
uint64_t WalkPriority(uint64_t shuffle_seed, int64_t epoch, uint64_t member_id, int64_t shard);

}  // namespace cohort::sharding
