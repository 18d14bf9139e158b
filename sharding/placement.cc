#include "sharding/placement.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "core/check.h"
#include "sharding/hash.h"
#include "sharding/jump_hash.h"

namespace cohort::sharding {
namespace {

// Domain separation: the same seed must not make a ring point collide with a
// key hash or a rendezvous member hash by construction.
constexpr uint64_t kRingPointSalt = 0x52494e47504f494eULL;  // "RINGPOIN"
constexpr uint64_t kMemberSalt = 0x4d454d4245524944ULL;     // "MEMBERID"

inline uint64_t KeyHash(uint64_t key, uint64_t seed) { return XxHash64Word(key, seed); }

std::string JoinNames() {
  std::string out;
  for (const std::string& name : PlacementSchemeNames()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// ---- ring and bounded ------------------------------------------------------

// The points of a consistent hash ring, sorted by position, with a prefix
// index over the top bits of the position so a lookup binary-searches only the
// few points sharing its prefix.
class HashRing {
 public:
  HashRing(const std::vector<Member>& members, int vnodes_per_weight, uint64_t seed) {
    struct Point {
      uint64_t position;
      uint64_t member_id;
      int32_t member;
    };
    std::vector<Point> points;
    for (size_t i = 0; i < members.size(); ++i) {
      const int64_t vnodes = VirtualNodes(members[i], vnodes_per_weight);
      for (int64_t r = 0; r < vnodes; ++r) {
        points.push_back(
            {XxHash64Pair(members[i].id, static_cast<uint64_t>(r), seed ^ kRingPointSalt),
             members[i].id, static_cast<int32_t>(i)});
      }
    }
    // Ties (two points at one position) are broken by member id so the ring
    // does not depend on the order of the member list.
    std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
      return a.position != b.position ? a.position < b.position : a.member_id < b.member_id;
    });
    positions_.reserve(points.size());
    owners_.reserve(points.size());
    for (const Point& p : points) {
      positions_.push_back(p.position);
      owners_.push_back(p.member);
    }
    // Prefix index: ~1 point per bucket.
    prefix_bits_ = 1;
    while (prefix_bits_ < 24 && (size_t{1} << prefix_bits_) < positions_.size()) ++prefix_bits_;
    const size_t buckets = size_t{1} << prefix_bits_;
    prefix_start_.assign(buckets + 1, 0);
    size_t p = 0;
    for (size_t b = 0; b < buckets; ++b) {
      while (p < positions_.size() && (positions_[p] >> (64 - prefix_bits_)) < b) ++p;
      prefix_start_[b] = static_cast<uint32_t>(p);
    }
    prefix_start_[buckets] = static_cast<uint32_t>(positions_.size());
  }

  static int64_t VirtualNodes(const Member& m, int vnodes_per_weight) {
    return std::max<int64_t>(1, std::llround(m.weight * vnodes_per_weight));
  }

  size_t size() const { return positions_.size(); }
  int32_t owner(size_t point) const { return owners_[point]; }

  // The first point at or after `position`, wrapping past the top to point 0.
  size_t Successor(uint64_t position) const {
    const uint64_t bucket = position >> (64 - prefix_bits_);
    const auto first = positions_.begin() + prefix_start_[bucket];
    const auto last = positions_.begin() + prefix_start_[bucket + 1];
    size_t p = static_cast<size_t>(std::lower_bound(first, last, position) - positions_.begin());
    return p == positions_.size() ? 0 : p;
  }

 private:
  std::vector<uint64_t> positions_;  // sorted ascending
  std::vector<int32_t> owners_;      // owners_[i]: member index of point i
  int prefix_bits_ = 1;
  std::vector<uint32_t> prefix_start_;  // first point of each prefix bucket; size 2^bits + 1
};

class RingPlacement final : public Placement {
 public:
  RingPlacement(std::vector<Member> members, const PlacementOptions& options)
      : Placement(std::move(members)),
        seed_(options.hash_seed),
        ring_(this->members(), options.vnodes_per_weight, options.hash_seed) {}

  std::string_view scheme() const override { return "ring"; }
  bool has_key_lookup() const override { return true; }
  int Owner(uint64_t key) const override {
    return ring_.owner(ring_.Successor(KeyHash(key, seed_)));
  }

 private:
  uint64_t seed_;
  HashRing ring_;
};

// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
// SODA 2018): shards are placed one by one in shard order, each on the first
// member clockwise from its hash that is still below its capacity.
class BoundedPlacement final : public Placement {
 public:
  BoundedPlacement(std::vector<Member> members, const PlacementOptions& options)
      : Placement(std::move(members)),
        seed_(options.hash_seed),
        epsilon_(options.epsilon),
        ring_(this->members(), options.vnodes_per_weight, options.hash_seed) {}

  std::string_view scheme() const override { return "bounded"; }
  bool has_key_lookup() const override { return false; }
  int Owner(uint64_t key) const override {
    COHORT_CHECK(false) << "the \"bounded\" placement has no single-key lookup; use Assign()";
    return -1;
  }

  Result<std::vector<int32_t>> Assign(int64_t num_shards) const override {
    COHORT_RETURN_IF_ERROR(ValidateShardCount(num_shards));
    const std::vector<Member>& ms = members();
    double total_weight = 0;
    for (const Member& m : ms) total_weight += m.weight;
    std::vector<int64_t> capacity(ms.size());
    for (size_t i = 0; i < ms.size(); ++i) {
      const double fair = static_cast<double>(num_shards) * ms[i].weight / total_weight;
      capacity[i] = std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 + epsilon_) * fair)));
    }
    // Total capacity >= (1 + epsilon) * num_shards > num_shards, so every walk
    // below ends at a member with room.
    std::vector<int64_t> load(ms.size(), 0);
    std::vector<int32_t> owners(static_cast<size_t>(num_shards));
    const size_t points = ring_.size();
    for (int64_t s = 0; s < num_shards; ++s) {
      size_t p = ring_.Successor(KeyHash(static_cast<uint64_t>(s), seed_));
      size_t steps = 0;
      while (load[ring_.owner(p)] >= capacity[ring_.owner(p)]) {
        p = (p + 1 == points) ? 0 : p + 1;
        COHORT_CHECK(++steps <= points) << "bounded placement: every member is full";
      }
      const int32_t owner = ring_.owner(p);
      ++load[owner];
      owners[static_cast<size_t>(s)] = owner;
    }
    return owners;
  }

 private:
  uint64_t seed_;
  double epsilon_;
  HashRing ring_;
};

// ---- jump ------------------------------------------------------------------

class JumpPlacement final : public Placement {
 public:
  JumpPlacement(std::vector<Member> members, const PlacementOptions& options)
      : Placement(std::move(members)), seed_(options.hash_seed) {}

  std::string_view scheme() const override { return "jump"; }
  bool has_key_lookup() const override { return true; }
  int Owner(uint64_t key) const override {
    return JumpConsistentHash(KeyHash(key, seed_), static_cast<int32_t>(members().size()));
  }

 private:
  uint64_t seed_;
};

// ---- rendezvous ------------------------------------------------------------

// Each (key, member) pair gets a pseudo-random h in (0, 1); the owner is the
// member with the highest score w / -ln(h). P(member i wins) = w_i / W exactly,
// and a change of membership only moves keys to a joiner or off a leaver.
// With equal weights the score is monotone in h, so the hash is compared
// directly (no log).
class RendezvousPlacement final : public Placement {
 public:
  RendezvousPlacement(std::vector<Member> members, const PlacementOptions& options)
      : Placement(std::move(members)), seed_(options.hash_seed) {
    const std::vector<Member>& ms = this->members();
    member_hash_.reserve(ms.size());
    inverse_weight_.reserve(ms.size());
    equal_weights_ = true;
    for (const Member& m : ms) {
      member_hash_.push_back(XxHash64Word(m.id, seed_ ^ kMemberSalt));
      inverse_weight_.push_back(1.0 / m.weight);
      if (m.weight != ms.front().weight) equal_weights_ = false;
    }
  }

  std::string_view scheme() const override { return "rendezvous"; }
  bool has_key_lookup() const override { return true; }

  int Owner(uint64_t key) const override {
    const uint64_t kh = KeyHash(key, seed_);
    const std::vector<Member>& ms = members();
    const size_t n = member_hash_.size();
    int best = 0;
    if (equal_weights_) {
      uint64_t best_h = SplitMix64(kh ^ member_hash_[0]);
      for (size_t i = 1; i < n; ++i) {
        const uint64_t h = SplitMix64(kh ^ member_hash_[i]);
        // Ties (practically never) go to the smaller id, not the earlier
        // position, so the answer does not depend on list order.
        if (h > best_h || (h == best_h && ms[i].id < ms[best].id)) {
          best_h = h;
          best = static_cast<int>(i);
        }
      }
      return best;
    }
    // Minimize -ln(h) / w, i.e. maximize w / -ln(h).
    double best_cost = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < n; ++i) {
      const double cost =
          -std::log(HashToUnitOpen(SplitMix64(kh ^ member_hash_[i]))) * inverse_weight_[i];
      if (cost < best_cost || (cost == best_cost && ms[i].id < ms[best].id)) {
        best_cost = cost;
        best = static_cast<int>(i);
      }
    }
    return best;
  }

 private:
  uint64_t seed_;
  bool equal_weights_ = true;
  std::vector<uint64_t> member_hash_;
  std::vector<double> inverse_weight_;
};

}  // namespace

const std::vector<std::string>& PlacementSchemeNames() {
  static const std::vector<std::string> kNames = {"ring", "bounded", "jump", "rendezvous"};
  return kNames;
}

Result<std::vector<int32_t>> Placement::Assign(int64_t num_shards) const {
  COHORT_RETURN_IF_ERROR(ValidateShardCount(num_shards));
  std::vector<int32_t> owners(static_cast<size_t>(num_shards));
  for (int64_t s = 0; s < num_shards; ++s) {
    owners[static_cast<size_t>(s)] = static_cast<int32_t>(Owner(static_cast<uint64_t>(s)));
  }
  return owners;
}

Status Placement::ValidateShardCount(int64_t num_shards) const {
  if (num_shards < 1) {
    return InvalidArgument("shard count must be at least 1, got " + std::to_string(num_shards));
  }
  if (num_shards > kMaxShards) {
    return InvalidArgument("shard count " + std::to_string(num_shards) + " is above the limit of " +
                           std::to_string(kMaxShards) + "; use larger shards");
  }
  if (num_shards < static_cast<int64_t>(members_.size())) {
    return InvalidArgument("more workers (" + std::to_string(members_.size()) + ") than shards (" +
                           std::to_string(num_shards) +
                           "): some worker would get no data; use at least as many shards as "
                           "workers, or fewer workers");
  }
  return Status::Ok();
}

Status ValidateMembers(const std::vector<Member>& members) {
  if (members.empty()) {
    return InvalidArgument("no workers: a placement needs at least one member");
  }
  if (static_cast<int64_t>(members.size()) > kMaxMembers) {
    return InvalidArgument(std::to_string(members.size()) + " workers is above the limit of " +
                           std::to_string(kMaxMembers));
  }
  std::unordered_set<uint64_t> seen;
  seen.reserve(members.size());
  for (const Member& m : members) {
    if (!seen.insert(m.id).second) {
      return InvalidArgument("duplicate member id " + std::to_string(m.id) +
                             ": every member needs a distinct id");
    }
    if (!std::isfinite(m.weight) || m.weight <= 0) {
      std::ostringstream msg;
      msg << "member " << m.id << " has weight " << m.weight
          << "; weights must be finite and greater than 0";
      return InvalidArgument(msg.str());
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Placement>> MakePlacement(std::string_view scheme,
                                                 std::vector<Member> members,
                                                 const PlacementOptions& options) {
  const auto& names = PlacementSchemeNames();
  if (std::find(names.begin(), names.end(), scheme) == names.end()) {
    return InvalidArgument("unknown placement scheme \"" + std::string(scheme) +
                           "\"; valid schemes: " + JoinNames());
  }
  COHORT_RETURN_IF_ERROR(ValidateMembers(members));
  if (scheme == "ring" || scheme == "bounded") {
    if (options.vnodes_per_weight < 1 || options.vnodes_per_weight > 100000) {
      return InvalidArgument("vnodes must be in [1, 100000], got " +
                             std::to_string(options.vnodes_per_weight));
    }
    int64_t points = 0;
    for (const Member& m : members) points += HashRing::VirtualNodes(m, options.vnodes_per_weight);
    if (points > kMaxRingPoints) {
      return InvalidArgument("the ring would have " + std::to_string(points) +
                             " points, above the limit of " + std::to_string(kMaxRingPoints) +
                             "; lower vnodes or the weights");
    }
  }
  if (scheme == "ring")
    return std::unique_ptr<Placement>(new RingPlacement(std::move(members), options));
  if (scheme == "bounded") {
    if (!(options.epsilon > 0 && options.epsilon <= 10)) {
      std::ostringstream msg;
      msg << "epsilon must be in (0, 10], got " << options.epsilon;
      return InvalidArgument(msg.str());
    }
    return std::unique_ptr<Placement>(new BoundedPlacement(std::move(members), options));
  }
  if (scheme == "jump") {
    for (const Member& m : members) {
      if (m.weight != members.front().weight) {
        return InvalidArgument("the \"jump\" scheme cannot weight members (member " +
                               std::to_string(m.id) +
                               " differs); use ring, bounded or rendezvous for weighted members");
      }
    }
    return std::unique_ptr<Placement>(new JumpPlacement(std::move(members), options));
  }
  return std::unique_ptr<Placement>(new RendezvousPlacement(std::move(members), options));
}

std::vector<Member> MakeMembers(int64_t count) {
  std::vector<Member> members;
  members.reserve(static_cast<size_t>(std::max<int64_t>(0, count)));
  for (int64_t i = 0; i < count; ++i) members.push_back({static_cast<uint64_t>(i), 1.0});
  return members;
}

std::vector<Member> LeaveMembers(const std::vector<Member>& members,
                                 const std::vector<uint64_t>& leaving_ids) {
  std::vector<Member> out = members;
  for (uint64_t id : leaving_ids) {
    auto it = std::find_if(out.begin(), out.end(), [id](const Member& m) { return m.id == id; });
    if (it == out.end()) continue;
    *it = out.back();
    out.pop_back();
  }
  return out;
}

int64_t CountMoved(const std::vector<Member>& before_members, const std::vector<int32_t>& before,
                   const std::vector<Member>& after_members, const std::vector<int32_t>& after) {
  COHORT_CHECK_EQ(before.size(), after.size());
  int64_t moved = 0;
  for (size_t s = 0; s < before.size(); ++s) {
    if (before_members[static_cast<size_t>(before[s])].id !=
        after_members[static_cast<size_t>(after[s])].id) {
      ++moved;
    }
  }
  return moved;
}

double IdealMovedFraction(int64_t members, int64_t joining, int64_t leaving) {
  COHORT_CHECK(members >= 1 && leaving >= 0 && leaving < members && joining >= 0);
  const double leave_share = static_cast<double>(leaving) / static_cast<double>(members);
  const double join_share =
      static_cast<double>(joining) / static_cast<double>(members - leaving + joining);
  return std::max(leave_share, join_share);
}

}  // namespace cohort::sharding
