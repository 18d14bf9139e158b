#include "sharding/shard_report.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "sharding/hash.h"
#include "sharding/placement.h"

namespace cohort {
namespace {

using sharding::Member;

// How long to keep re-running an assignment to time lookups (at least once).
constexpr double kMinTimingSeconds = 0.05;
constexpr int kMaxTimingRuns = 50;
constexpr uint64_t kLeaveSalt = 0x4c45415645525321ULL;  // "LEAVERS!"

struct SchemeReport {
  std::string name;
  int64_t min = 0;
  double mean = 0;
  int64_t max = 0;
  double max_over_mean = 0;
  int64_t moved = 0;
  double moved_fraction = 0;
  double ideal_moved_fraction = 0;
  double lookups_per_s = 0;
};

Status Validate(const ShardCmdOptions& o) {
  auto str = [](auto v) { return std::to_string(v); };
  if (o.workers < 1) return InvalidArgument("--workers must be at least 1, got " + str(o.workers));
  if (o.workers > sharding::kMaxMembers) {
    return InvalidArgument("--workers " + str(o.workers) + " is above the limit of " +
                           str(sharding::kMaxMembers));
  }
  if (o.shards < 1) return InvalidArgument("--shards must be at least 1, got " + str(o.shards));
  if (o.shards > sharding::kMaxShards) {
    return InvalidArgument("--shards " + str(o.shards) + " is above the limit of " +
                           str(sharding::kMaxShards));
  }
  if (o.join < 0) return InvalidArgument("--join must be >= 0, got " + str(o.join));
  if (o.leave < 0) return InvalidArgument("--leave must be >= 0, got " + str(o.leave));
  if (o.workers > o.shards) {
    return InvalidArgument("more workers (" + str(o.workers) + ") than shards (" + str(o.shards) +
                           "): some worker would get no data; raise --shards or lower --workers");
  }
  if (o.leave >= o.workers) {
    return InvalidArgument("--leave " + str(o.leave) + " would leave no worker out of " +
                           str(o.workers) + "; use at most " + str(o.workers - 1));
  }
  const int64_t after = int64_t{o.workers} - o.leave + o.join;
  if (after > o.shards) {
    return InvalidArgument("after the change there would be more workers (" + str(after) +
                           ") than shards (" + str(o.shards) + "); raise --shards or lower --join");
  }
  if (int64_t{o.workers} + o.join > sharding::kMaxMembers) {
    return InvalidArgument("--workers plus --join is above the limit of " +
                           str(sharding::kMaxMembers));
  }
  if (o.scheme != "all") {
    const auto& names = sharding::PlacementSchemeNames();
    if (std::find(names.begin(), names.end(), o.scheme) == names.end()) {
      std::string valid = "all";
      for (const auto& n : names) valid += ", " + n;
      return InvalidArgument("unknown --scheme \"" + o.scheme + "\"; valid: " + valid);
    }
  }
  return Status::Ok();
}

// The member list after `leave` seeded-random workers leave and `join` new
// ones (fresh ids) join.
std::vector<Member> ChangedMembers(const std::vector<Member>& before, const ShardCmdOptions& o) {
  std::vector<std::pair<uint64_t, uint64_t>> order;  // (hash, id)
  order.reserve(before.size());
  for (const Member& m : before) {
    order.emplace_back(sharding::XxHash64Word(m.id, o.seed ^ kLeaveSalt), m.id);
  }
  std::sort(order.begin(), order.end());
  std::vector<uint64_t> leaving;
  for (int i = 0; i < o.leave; ++i) leaving.push_back(order[static_cast<size_t>(i)].second);
  std::vector<Member> after = sharding::LeaveMembers(before, leaving);
  for (int j = 0; j < o.join; ++j) {
    after.push_back({static_cast<uint64_t>(o.workers) + static_cast<uint64_t>(j), 1.0});
  }
  return after;
}

Result<SchemeReport> Measure(const std::string& scheme, const std::vector<Member>& before,
                             const std::vector<Member>& after, const ShardCmdOptions& o) {
  sharding::PlacementOptions popts;
  popts.vnodes_per_weight = o.vnodes;
  popts.epsilon = o.eps;
  popts.hash_seed = o.seed;
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<sharding::Placement> placement,
                          sharding::MakePlacement(scheme, before, popts));

  // Time the assignment; it is Owner() over every shard, the lookup rate.
  using Clock = std::chrono::steady_clock;
  std::vector<int32_t> owners;
  const auto start = Clock::now();
  int runs = 0;
  double seconds = 0;
  do {
    COHORT_ASSIGN_OR_RETURN(owners, placement->Assign(o.shards));
    ++runs;
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  } while (seconds < kMinTimingSeconds && runs < kMaxTimingRuns);

  SchemeReport r;
  r.name = scheme;
  r.lookups_per_s = seconds > 0 ? static_cast<double>(o.shards) * runs / seconds : 0;
  std::vector<int64_t> load(before.size(), 0);
  for (int32_t w : owners) ++load[static_cast<size_t>(w)];
  r.min = *std::min_element(load.begin(), load.end());
  r.max = *std::max_element(load.begin(), load.end());
  r.mean = static_cast<double>(o.shards) / static_cast<double>(before.size());
  r.max_over_mean = static_cast<double>(r.max) / r.mean;

  if (o.join > 0 || o.leave > 0) {
    COHORT_ASSIGN_OR_RETURN(std::unique_ptr<sharding::Placement> changed,
                            sharding::MakePlacement(scheme, after, popts));
    COHORT_ASSIGN_OR_RETURN(std::vector<int32_t> owners_after, changed->Assign(o.shards));
    r.moved = sharding::CountMoved(before, owners, after, owners_after);
    r.moved_fraction = static_cast<double>(r.moved) / static_cast<double>(o.shards);
    r.ideal_moved_fraction = sharding::IdealMovedFraction(o.workers, o.join, o.leave);
  }
  return r;
}

std::string Format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

void PrintTable(const ShardCmdOptions& o, const std::vector<SchemeReport>& reports,
                std::ostream& out) {
  out << "cohort shard: " << o.workers << " workers, " << o.shards << " shards";
  if (o.join > 0) out << ", " << o.join << " join";
  if (o.leave > 0) out << ", " << o.leave << " leave";
  out << " (seed " << o.seed << ", vnodes " << o.vnodes << ", eps " << o.eps << ")\n\n";

  const bool changed = o.join > 0 || o.leave > 0;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"scheme", "min", "mean", "max", "max/mean"};
  if (changed) {
    for (const char* h : {"moved", "moved%", "ideal%", "moved/ideal"}) header.push_back(h);
  }
  header.push_back("lookups/s");
  rows.push_back(header);
  for (const SchemeReport& r : reports) {
    std::vector<std::string> row = {r.name, std::to_string(r.min), Format("%.1f", r.mean),
                                    std::to_string(r.max), Format("%.3f", r.max_over_mean)};
    if (changed) {
      row.push_back(std::to_string(r.moved));
      row.push_back(Format("%.2f", 100 * r.moved_fraction));
      row.push_back(Format("%.2f", 100 * r.ideal_moved_fraction));
      row.push_back(r.ideal_moved_fraction > 0
                        ? Format("%.2f", r.moved_fraction / r.ideal_moved_fraction)
                        : std::string("-"));
    }
    row.push_back(Format("%.3g", r.lookups_per_s));
    rows.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) out << "  ";
      // Names left-aligned, numbers right-aligned.
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c == 0) {
        out << row[c] << pad;
      } else {
        out << pad << row[c];
      }
    }
    out << "\n";
  }
  bool has_bounded = false;
  for (const auto& r : reports) has_bounded |= (r.name == "bounded");
  out << "\nmean = shards/workers before the change; moved = shards whose owner changed";
  if (changed) out << ";\nideal = the least any placement must move";
  out << ".\n";
  if (has_bounded) {
    out << "bounded has no single-key lookup: its lookups/s is shards placed per second by a "
           "full assignment.\n";
  }
  if (o.leave > 0) {
    out << "jump removes a non-last worker by moving the last worker into its bucket, so it "
           "moves about 2x the ideal.\n";
  }
}

}  // namespace

int RunShardCommand(const ShardCmdOptions& options, std::ostream& out, std::ostream& err) {
  auto fail = [&err](const Status& s) {
    err << "cohort shard: error: " << s.message() << "\n";
    return 2;
  };
  if (Status s = Validate(options); !s.ok()) return fail(s);

  const std::vector<Member> before = sharding::MakeMembers(options.workers);
  const std::vector<Member> after = ChangedMembers(before, options);
  std::vector<std::string> schemes;
  if (options.scheme == "all") {
    schemes = sharding::PlacementSchemeNames();
  } else {
    schemes = {options.scheme};
  }
  std::vector<SchemeReport> reports;
  for (const std::string& scheme : schemes) {
    Result<SchemeReport> r = Measure(scheme, before, after, options);
    if (!r.ok()) return fail(r.status().WithContext(scheme));
    reports.push_back(std::move(r).value());
  }

  if (options.json) {
    nlohmann::json doc;
    doc["workers"] = options.workers;
    doc["shards"] = options.shards;
    doc["join"] = options.join;
    doc["leave"] = options.leave;
    nlohmann::json& by_name = doc["schemes"];
    by_name = nlohmann::json::object();
    for (const SchemeReport& r : reports) {
      by_name[r.name] = {{"min", r.min},
                         {"mean", r.mean},
                         {"max", r.max},
                         {"max_over_mean", r.max_over_mean},
                         {"moved", r.moved},
                         {"moved_fraction", r.moved_fraction},
                         {"ideal_moved_fraction", r.ideal_moved_fraction},
                         {"lookups_per_s", r.lookups_per_s}};
    }
    out << doc.dump() << "\n";
  } else {
    PrintTable(options, reports, out);
  }
  return 0;
}

}  // namespace cohort
