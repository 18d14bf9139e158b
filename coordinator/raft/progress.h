#pragma once
// What a leader knows about one follower's log, and the flow control that
// bounds what it sends (the design of etcd's raft/tracker). Owned by Raft;
// not thread-safe.

#include <cstddef>
#include <cstdint>
#include <deque>

#include "core/check.h"

namespace cohort::coordinator::raft {

enum class ProgressState : uint8_t {
  kProbe,      // next is a guess: one append at a time until one is accepted
  kReplicate,  // streaming: next advances optimistically, bounded by Inflights
  kSnapshot,   // a snapshot is on its way; nothing else is sent
};
const char* ProgressStateName(ProgressState s);

// The last index of each append still unacknowledged, oldest first, at most
// `capacity` of them.
class Inflights {
 public:
  explicit Inflights(size_t capacity) : capacity_(capacity) {}
  bool Full() const { return items_.size() >= capacity_; }
  size_t Count() const { return items_.size(); }
  void Add(uint64_t last_index) {
    COHORT_CHECK(!Full()) << "Inflights::Add on a full window";
    items_.push_back(last_index);
  }
  // Frees every append whose last index is <= `index` (acknowledged).
  void FreeLE(uint64_t index) {
    while (!items_.empty() && items_.front() <= index) items_.pop_front();
  }
  void FreeFirstOne() {
    if (!items_.empty()) items_.pop_front();
  }
  void Reset() { items_.clear(); }

 private:
  size_t capacity_;
  std::deque<uint64_t> items_;
};

struct Progress {
  explicit Progress(size_t max_inflight) : inflights(max_inflight) {}

  // Invariant: match < next. Entries <= match are known to be on the follower.
  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  bool probe_sent = false;        // kProbe: an append is out, wait for its answer
  uint64_t pending_snapshot = 0;  // kSnapshot: index of the snapshot sent
  int snapshot_ticks = 0;         // kSnapshot: ticks since it was sent (for retry)
  bool recent_active = false;     // heard from since the last CheckQuorum round
  Inflights inflights;

  bool IsPaused() const;
  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // An acknowledgement of `index`; false when it told nothing new.
  bool MaybeUpdate(uint64_t index);
  // A rejection of the append after `rejected`; `hint` is the follower's last
  // index. False when the rejection is stale (already handled).
  bool MaybeDecrTo(uint64_t rejected, uint64_t hint);
};

}  // namespace cohort::coordinator::raft
