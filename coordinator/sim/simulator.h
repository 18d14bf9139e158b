#pragma once
// The deterministic cluster simulator (CONTRIBUTING.md, "Tests"; after TigerBeetle's VOPR
// and FoundationDB's simulation). One seed fixes everything: the fault rates,
// every drop, duplicate, delay, partition, crash, torn write and client
// operation, and each node's election-timeout RNG. Nodes are real Raft cores
// over real Wal storage on a MemFileSystem per node; time is ticks.
//
// Safety phase: random faults. After every step it checks election safety
// (one leader per term), log matching (same index and term => same entry and
// same predecessor term), leader completeness (a new leader holds every entry
// applied so far) and state-machine safety (every node applies the same entry
// at each index). Then the faults heal, and the liveness phase requires a
// leader and a committed write within a bound. Last, the key-value client
// history must be linearizable (sim/linearizability.h).
//
// Thread safety: RunSimulation is reentrant (no globals).

#include <cstdint>
#include <string>

namespace cohort::coordinator {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;             // 3 or 5
  int steps = 1000;          // ticks of the safety phase
  int liveness_ticks = 400;  // bound on the liveness phase
  bool verbose = false;      // print fault and leader events to stderr
};

struct SimStats {
  uint64_t steps = 0;
  uint64_t elections = 0;  // distinct (term, leader) pairs seen
  uint64_t commits = 0;    // log indexes applied cluster-wide
  uint64_t faults = 0;     // all of the below
  uint64_t drops = 0, duplicates = 0, partitions = 0, crashes = 0, torn_crashes = 0;
  uint64_t torn_tails_recovered = 0;  // restarts that truncated a torn WAL tail
  uint64_t messages = 0;
  uint64_t snapshots = 0, snapshot_installs = 0, conf_changes = 0, transfers = 0;
  uint64_t client_ops = 0, reads = 0;  // completed client operations / reads among them
  uint64_t lin_states = 0;
  void Add(const SimStats& o);
};

struct SimResult {
  bool ok = true;
  std::string failure;  // what was violated, when, and where
  SimStats stats;
};

SimResult RunSimulation(const SimOptions& options);

}  // namespace cohort::coordinator
