#pragma once
// Shard placement: which member of a job owns which shard.
//
// Four schemes sit behind one interface, chosen by name (MakePlacement):
//   "ring"        consistent hash ring with virtual nodes (Karger et al. 1997).
//                 O(log P) lookup; balance depends on the virtual node count.
//   "bounded"     consistent hashing with bounded loads (Mirrokni, Thorup,
//                 Zadimoghaddam 2018): the ring, but no member takes more than
//                 ceil((1 + epsilon) * its fair share) shards. Needs the whole
//                 shard set, so it has no single-key lookup.
//   "jump"        jump consistent hash (Lamping & Veach 2014). O(log n) lookup,
//                 no memory, near-perfect balance, but buckets are positions in
//                 the member list: only removing the LAST member is a clean
//                 1/n move. See JumpPlacement in jump_hash.h and LeaveMembers.
//   "rendezvous"  highest random weight hashing (Thaler & Ravishankar 1998),
//                 weighted with the -w / ln(h) score (Schindelhauer & Schomaker
//                 2005). O(n) lookup, ideal movement.
//
// A Placement is an immutable function of (members, options): every worker
// that builds one from the same inputs gets the same answers, on any machine.
// It does no I/O. All const methods are thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace cohort::sharding {

// Bounds on the inputs (CONTRIBUTING.md, "Limits"): beyond them memory or time blows up.
inline constexpr int64_t kMaxMembers = 1 << 20;
inline constexpr int64_t kMaxShards = int64_t{1} << 28;      // 1 GiB of owners
inline constexpr int64_t kMaxRingPoints = int64_t{1} << 26;  // ~0.75 GiB of ring

// One participant of the job. `id` is stable for the member's lifetime (it is
// what the hash sees, so it must not be a position in a list); `weight` is its
// relative capacity: a member of weight 2 should own twice the shards of a
// member of weight 1. Invariant (checked by MakePlacement): weight is finite
// and > 0, ids are unique within a member list.
struct Member {
  uint64_t id = 0;
  double weight = 1.0;
};

struct PlacementOptions {
  // "ring"/"bounded": virtual nodes per unit of weight; a member gets
  // max(1, round(vnodes_per_weight * weight)) points. Must be in [1, 100000].
  int vnodes_per_weight = 160;
  // "bounded": capacity slack. A member of weight w owns at most
  // ceil((1 + epsilon) * S * w / W) of S shards (W: total weight).
  // Must be in (0, 10]. Smaller is better balance but more movement.
  double epsilon = 0.05;
  // Seed of every hash. All workers of a job must use the same seed.
  uint64_t hash_seed = 0;
};

// The names MakePlacement accepts, in display order.
const std::vector<std::string>& PlacementSchemeNames();

class Placement {
 public:
  virtual ~Placement() = default;

  // The scheme name ("ring", "bounded", "jump", "rendezvous").
  virtual std::string_view scheme() const = 0;

  // The member list this placement was built from, in the caller's order.
  // Owner indexes below index into it.
  const std::vector<Member>& members() const { return members_; }

  // Whether Owner(key) is available (false for "bounded", which can only
  // place a whole shard set at once).
  virtual bool has_key_lookup() const = 0;

  // Index into members() of the owner of `key` (any 64-bit key: a shard
  // index, a sample id, a hash). Requires has_key_lookup(); calling it on a
  // scheme without one is a bug (COHORT_CHECK).
  virtual int Owner(uint64_t key) const = 0;

  // Owners of shards 0..num_shards-1 (shard s has key s), as indexes into
  // members(). Errors: InvalidArgument when num_shards < 1, num_shards >
  // kMaxShards, or num_shards < members().size() (some member would own
  // nothing).
  virtual Result<std::vector<int32_t>> Assign(int64_t num_shards) const;

 protected:
  explicit Placement(std::vector<Member> members) : members_(std::move(members)) {}
  // Checks num_shards for Assign (the errors listed there).
  Status ValidateShardCount(int64_t num_shards) const;

 private:
  std::vector<Member> members_;
};

// Builds the scheme named `scheme` over `members`.
// Errors (InvalidArgument, with what to do): unknown scheme (lists the valid
// names); empty member list; more than kMaxMembers members; duplicate ids;
// weight not finite and > 0; "jump" with unequal weights; options out of range;
// a ring of more than kMaxRingPoints points.
Result<std::unique_ptr<Placement>> MakePlacement(std::string_view scheme,
                                                 std::vector<Member> members,
                                                 const PlacementOptions& options = {});

// Checks a member list (the member errors listed for MakePlacement).
Status ValidateMembers(const std::vector<Member>& members);

// `count` members with ids 0..count-1 and weight 1.
std::vector<Member> MakeMembers(int64_t count);

// Returns `members` without the members whose id is in `leaving_ids` (ids not
// present are ignored). Each hole is filled by moving the current last member
// into it, so every member that stays keeps its position except the ones
// moved from the tail. Order does not matter to "ring", "bounded" and
// "rendezvous"; for "jump" (buckets are positions) this is the least-movement
// order: removing the last member moves only its ~1/n of the keys, removing
// any other moves ~2/n (its keys go to the member moved into its bucket, and
// the last bucket's keys are spread over the rest).
std::vector<Member> LeaveMembers(const std::vector<Member>& members,
                                 const std::vector<uint64_t>& leaving_ids);

// Number of shards whose owner id differs between two assignments of the same
// shard set (each an Assign() result over its own member list).
// COHORT_CHECKs that both cover the same number of shards.
int64_t CountMoved(const std::vector<Member>& before_members, const std::vector<int32_t>& before,
                   const std::vector<Member>& after_members, const std::vector<int32_t>& after);

// The least fraction of shards any placement must move when `leaving` of
// `members` members leave and `joining` join at once: the leavers' share
// leaving/members must move, and the joiners must receive their share
// joining/(members - leaving + joining); the leavers' shards can be handed
// straight to the joiners, so the ideal is the larger of the two.
// 0 when nothing changes. Requires 0 <= leaving < members, joining >= 0.
double IdealMovedFraction(int64_t members, int64_t joining, int64_t leaving);

}  // namespace cohort::sharding
