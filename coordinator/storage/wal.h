#pragma once
// A write-ahead log in segment files plus snapshot files, in one directory:
//
//   wal-<seq:016x>.log        records, appended; a new segment when the
//                             current one passes segment_bytes
//   snap-<index:016x>.snap    snapshots, written atomically; newest 2 kept
//
// Record: u32 payload length | u32 CRC32C of payload | payload, where the
// payload's first byte is its type: an entry (term, index, type, data), a hard
// state (term, vote, commit), or a log reset to a snapshot (index, term). A
// later entry at index i replaces stored entries >= i.
//
// Recovery: the newest snapshot, then every segment in order. A partial last
// record of the last segment (or a zeroed tail, or a bad CRC on the record
// that ends the file) is a torn write: it is truncated away. Anything else
// that does not decode is refused with DataLoss naming the file and offset.
// The log is then reconciled with the snapshot: entries it covers are
// dropped, and a log that does not continue it (a snapshot from a leader
// whose reset record was lost in a crash) is discarded, with a reset record
// written so that later appends follow the snapshot.
// A torn tail may drop an acknowledged record only if the disk lost synced
// bytes, which no WAL can tell from a torn write.
//
// Thread safety: none (the driver thread owns it).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/raft/limits.h"
#include "coordinator/storage/file_system.h"
#include "coordinator/storage/storage.h"

namespace cohort::coordinator {

struct WalOptions {
  std::string dir;
  uint64_t segment_bytes = raft::limits::kWalSegmentBytes;
};

struct WalStats {
  uint64_t syncs = 0;
  uint64_t records = 0;
  uint64_t torn_bytes_truncated = 0;  // at the last Load()
  uint64_t segments_removed = 0;
};

class Wal final : public Storage {
 public:
  // `fs` must outlive the Wal.
  Wal(FileSystem* fs, WalOptions options);

  Result<raft::InitialState> Load() override;
  Status Save(const std::optional<raft::HardState>& hard_state,
              const std::vector<raft::Entry>& entries,
              const std::optional<raft::Snapshot>& snapshot, bool sync) override;
  Status SaveSnapshot(const raft::Snapshot& snapshot) override;

  const WalStats& stats() const { return stats_; }
  // Segment file names currently in use, oldest first.
  std::vector<std::string> SegmentNames() const;

 private:
  struct Segment {
    uint64_t seq = 0;
    uint64_t bytes = 0;
    uint64_t max_index = 0;  // highest entry or reset index it holds
  };
  struct Replay;  // wal.cc

  // The steps of Load: replay one segment (truncating a torn tail of the
  // last), one record of it; reconcile the replayed log with the newest
  // snapshot (true: a reset record must follow); open the last segment for
  // appends (a new one when there is none) and write that reset record.
  Status ReplaySegment(uint64_t seq, bool last_segment, Replay* r);
  static Status ReplayRecord(std::string_view payload, const std::string& path, uint64_t off,
                             Replay* r, Segment* seg);
  Result<bool> ReconcileWithSnapshot(const raft::SnapshotMeta& sm, Replay* r) const;
  Status OpenLastSegment(const raft::SnapshotMeta& sm, bool need_reset);

  std::string SegmentPath(uint64_t seq) const;
  Status WriteSnapshotFile(const raft::Snapshot& s);
  Status StartSegment(uint64_t seq);
  Status RemoveCoveredSegments(uint64_t snapshot_index);

  FileSystem* fs_;
  WalOptions options_;
  bool loaded_ = false;
  std::vector<Segment> segments_;  // oldest first; the last one is open
  std::unique_ptr<WritableFile> current_;
  raft::HardState hard_state_;  // last persisted, re-written at the start of each segment
  WalStats stats_;
};

// Snapshot file format helpers (exposed for tests).
std::string EncodeSnapshotFile(const raft::Snapshot& s);
Result<raft::Snapshot> DecodeSnapshotFile(const std::string& contents, const std::string& path);

}  // namespace cohort::coordinator
