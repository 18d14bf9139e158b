#pragma once
// Where a Raft node keeps its durable state: the hard state, the log, and
// snapshots. The driver calls Load() once at start, then Save() once per
// Ready (group commit: one Ready, one fsync) and SaveSnapshot() after it
// compacts. Implementations: Wal (segment files over a FileSystem; over
// MemFileSystem it is the simulator's in-memory twin, crash model included).
//
// Thread safety: none; the driver thread owns a Storage.

#include <optional>
#include <vector>

#include "coordinator/raft/raft.h"
#include "core/status.h"

namespace cohort::coordinator {

class Storage {
 public:
  virtual ~Storage() = default;
  // Recovers what is on disk. DataLoss (naming file and byte offset) on any
  // corruption other than a torn tail, which is truncated. Call once, first.
  virtual Result<raft::InitialState> Load() = 0;
  // Persists one Ready's worth. `snapshot` (from a leader) replaces the whole
  // log; `entries` replace stored entries at and after entries.front().index;
  // then `hard_state`. With `sync`, everything is durable when this returns
  // (one fsync for the whole batch).
  virtual Status Save(const std::optional<raft::HardState>& hard_state,
                      const std::vector<raft::Entry>& entries,
                      const std::optional<raft::Snapshot>& snapshot, bool sync) = 0;
  // Persists a snapshot the application took (Raft::CreateSnapshot); log
  // entries it covers may be dropped.
  virtual Status SaveSnapshot(const raft::Snapshot& snapshot) = 0;
};

}  // namespace cohort::coordinator
