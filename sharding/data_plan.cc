#include "sharding/data_plan.h"

#include <algorithm>
#include <utility>

#include "core/check.h"
#include "sharding/hash.h"

namespace cohort::sharding {
namespace {

// Builds the plan with `consumed_flags[s]` marking shards to leave out.
Result<EpochPlan> BuildPlan(int64_t num_shards, const std::vector<Member>& members, int64_t epoch,
                            std::vector<bool> consumed_flags, const DataPlanOptions& options) {
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<Placement> placement,
                          MakePlacement(options.scheme, members, options.placement));
  COHORT_ASSIGN_OR_RETURN(std::vector<int32_t> owner, placement->Assign(num_shards));

  EpochPlan plan;
  plan.epoch = epoch;
  plan.num_shards = num_shards;
  plan.walks.resize(members.size());
  for (size_t i = 0; i < members.size(); ++i) plan.walks[i].member_id = members[i].id;

  // Count first so every walk is allocated once.
  std::vector<size_t> counts(members.size(), 0);
  for (int64_t s = 0; s < num_shards; ++s) {
    if (!consumed_flags[static_cast<size_t>(s)])
      ++counts[static_cast<size_t>(owner[static_cast<size_t>(s)])];
  }
  for (size_t i = 0; i < members.size(); ++i) plan.walks[i].shards.reserve(counts[i]);
  for (int64_t s = 0; s < num_shards; ++s) {
    if (consumed_flags[static_cast<size_t>(s)]) {
      plan.consumed.push_back(s);
    } else {
      plan.walks[static_cast<size_t>(owner[static_cast<size_t>(s)])].shards.push_back(s);
    }
  }
  std::vector<std::pair<uint64_t, int64_t>> keyed;
  for (MemberWalk& walk : plan.walks) {
    keyed.clear();
    keyed.reserve(walk.shards.size());
    for (int64_t s : walk.shards) {
      keyed.emplace_back(WalkPriority(options.shuffle_seed, epoch, walk.member_id, s), s);
    }
    std::sort(keyed.begin(), keyed.end());
    for (size_t k = 0; k < keyed.size(); ++k) walk.shards[k] = keyed[k].second;
  }
  plan.owner = std::move(owner);
  return plan;
}

Status ValidateEpoch(int64_t epoch) {
  if (epoch < 0) return InvalidArgument("epoch must be >= 0, got " + std::to_string(epoch));
  return Status::Ok();
}

}  // namespace

uint64_t WalkPriority(uint64_t shuffle_seed, int64_t epoch, uint64_t member_id, int64_t shard) {
  const uint64_t stream = XxHash64Pair(static_cast<uint64_t>(epoch), member_id, shuffle_seed);
  return XxHash64Word(static_cast<uint64_t>(shard), stream);
}

Result<EpochPlan> PlanEpoch(int64_t num_shards, const std::vector<Member>& members, int64_t epoch,
                            const DataPlanOptions& options) {
  return ReplanEpoch(num_shards, members, epoch, {}, options);
}

Result<EpochPlan> ReplanEpoch(int64_t num_shards, const std::vector<Member>& members, int64_t epoch,
                              const std::vector<int64_t>& consumed,
                              const DataPlanOptions& options) {
  COHORT_RETURN_IF_ERROR(ValidateEpoch(epoch));
  // Shard-count errors come from Assign; check the range here only so the
  // flag vector below is safe to size.
  if (num_shards < 1 || num_shards > kMaxShards) {
    return InvalidArgument("shard count must be in [1, " + std::to_string(kMaxShards) + "], got " +
                           std::to_string(num_shards));
  }
  std::vector<bool> flags(static_cast<size_t>(num_shards), false);
  for (int64_t s : consumed) {
    if (s < 0 || s >= num_shards) {
      return InvalidArgument("consumed shard " + std::to_string(s) + " is outside [0, " +
                             std::to_string(num_shards) + ")");
    }
    if (flags[static_cast<size_t>(s)]) {
      return InvalidArgument("consumed shard " + std::to_string(s) +
                             " is listed twice; pass each consumed shard once");
    }
    flags[static_cast<size_t>(s)] = true;
  }
  return BuildPlan(num_shards, members, epoch, std::move(flags), options);
}

Result<std::vector<int64_t>> ConsumedAfter(const EpochPlan& plan,
                                           const std::vector<int64_t>& walked) {
  if (walked.size() != plan.walks.size()) {
    return InvalidArgument("progress has " + std::to_string(walked.size()) +
                           " entries but the plan has " + std::to_string(plan.walks.size()) +
                           " members; pass one count per member, in plan order");
  }
  std::vector<int64_t> out = plan.consumed;
  for (size_t i = 0; i < walked.size(); ++i) {
    const auto& shards = plan.walks[i].shards;
    if (walked[i] < 0 || walked[i] > static_cast<int64_t>(shards.size())) {
      return InvalidArgument("member " + std::to_string(plan.walks[i].member_id) + " walked " +
                             std::to_string(walked[i]) + " shards but owns " +
                             std::to_string(shards.size()) + " in this plan");
    }
    out.insert(out.end(), shards.begin(), shards.begin() + walked[i]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t CountMovedUnconsumed(const EpochPlan& before, const EpochPlan& after) {
  COHORT_CHECK_EQ(before.num_shards, after.num_shards);
  std::vector<bool> consumed(static_cast<size_t>(after.num_shards), false);
  for (int64_t s : after.consumed) consumed[static_cast<size_t>(s)] = true;
  int64_t moved = 0;
  for (int64_t s = 0; s < after.num_shards; ++s) {
    const auto i = static_cast<size_t>(s);
    if (consumed[i]) continue;
    if (before.walks[static_cast<size_t>(before.owner[i])].member_id !=
        after.walks[static_cast<size_t>(after.owner[i])].member_id) {
      ++moved;
    }
  }
  return moved;
}

}  // namespace cohort::sharding
