#pragma once
// `cohort shard`: shows how each placement scheme spreads shards over workers
// and how many shards move when workers join or leave.
//
// The report behind the command (it writes to the streams it is given); the
// flags are parsed in tools/main.cc, which fills the options struct and calls
// RunShardCommand. Suggested flags: --workers, --shards,
// --vnodes, --join, --leave, --scheme, --json, --seed, --eps (one per field).

#include <cstdint>
#include <iosfwd>
#include <string>

namespace cohort {

struct ShardCmdOptions {
  int workers = 0;             // workers before the change; >= 1 and <= shards
  int64_t shards = 0;          // dataset shards; >= workers + join
  int vnodes = 160;            // ring/bounded virtual nodes per worker, [1, 100000]
  int join = 0;                // workers that join (ids workers..workers+join-1)
  int leave = 0;               // workers that leave, chosen by `seed`; < workers
  std::string scheme = "all";  // "all", or one of ring|bounded|jump|rendezvous
  bool json = false;           // one JSON object on `out` instead of the table
  uint64_t seed = 1;           // hash seed and choice of the leaving workers
  double eps = 0.05;           // bounded-loads slack, (0, 10]
};

// Runs the command. Writes the table (or, with json, exactly one JSON object
// and a newline) to `out`. On bad options writes one line
// "cohort shard: error: <what and what to do>" to `err`, nothing to `out`,
// and returns 2. Returns 0 on success.
//
// Leaving workers are picked pseudo-randomly from `seed`, not the last ones,
// and removed with LeaveMembers (sharding/placement.h): for "jump" a leave
// that is not the last bucket moves about twice the ideal, and that is what
// the command reports. Lookups/s is the rate of Placement::Owner over all
// shards (for "bounded", which has no single-key lookup, the rate of a full
// assignment per shard); it is a wall-clock measurement, so it varies.
int RunShardCommand(const ShardCmdOptions& options, std::ostream& out, std::ostream& err);

}  // namespace cohort
