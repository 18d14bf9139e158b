#pragma once
// Every bound of the Raft core, the WAL and the simulator, named in one place
// (CONTRIBUTING.md, "Limits"). Changing one changes behaviour under load, so each says why
// it is the size it is.

#include <cstddef>
#include <cstdint>

namespace cohort::coordinator::raft::limits {

// Flow control: append messages a leader keeps in flight to one follower in
// the replicate state before it waits for acknowledgements.
inline constexpr size_t kMaxInflightMsgs = 64;
// Entries and payload bytes in one append message.
inline constexpr size_t kMaxEntriesPerMsg = 64;
inline constexpr size_t kMaxBytesPerMsg = 1 << 20;
// One proposal's payload; larger ones are refused with InvalidArgument.
inline constexpr size_t kMaxEntryBytes = 1 << 20;
// Proposals a leader accepts beyond its commit index before it refuses new
// ones (back-pressure instead of an unbounded log in memory).
inline constexpr uint64_t kMaxUncommittedEntries = 4096;
// ReadIndex requests a leader holds while it confirms its leadership.
inline constexpr size_t kMaxPendingReads = 1024;
// Voters in one group. Raft groups beyond 7 buy nothing but latency.
inline constexpr size_t kMaxVoters = 9;

// WAL: one record (header excluded) and one segment file.
inline constexpr uint32_t kMaxWalRecordBytes = (1 << 20) + 4096;
inline constexpr uint64_t kWalSegmentBytes = 64ull << 20;
// Snapshot file size accepted on recovery.
inline constexpr uint64_t kMaxSnapshotBytes = 1ull << 30;

// Key-value state machine: key and value sizes, client sessions kept for
// de-duplication (the least recently used one is evicted beyond this).
inline constexpr size_t kMaxKeyBytes = 4096;
inline constexpr size_t kMaxValueBytes = 64 << 10;
inline constexpr size_t kMaxClientSessions = 4096;

// Job registry and leases (kv/kv_state_machine.h). Members known at once
// (left and failed ones are forgotten first when a new one joins); a job of
// more ranks than this is not what one coordinator is for.
inline constexpr size_t kMaxMembers = 4096;
// Earlier epochs whose rank assignment is kept (for status and debugging).
inline constexpr size_t kMaxEpochHistory = 16;
// Checkpoints proposed and not yet committed (one per step).
inline constexpr size_t kMaxPendingCheckpoints = 64;
// Live leases, and the longest TTL one may ask for (one day).
inline constexpr size_t kMaxLeases = 65536;
inline constexpr uint64_t kMaxLeaseTtlMs = 24ull * 3600 * 1000;
// Deleted keys remembered with their revision, so a watch sees a deletion.
inline constexpr size_t kMaxTombstones = 4096;

}  // namespace cohort::coordinator::raft::limits
