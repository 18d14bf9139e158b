#pragma once
// The Raft consensus core as a pure state machine (the design of etcd's raft
// package; CONTRIBUTING.md, "Decisions apart from I/O"). It does no I/O, starts
// no thread and reads no clock: the driver feeds it messages (Step) and logical
// ticks (Tick), then drains Ready() and calls Advance().
//
// Driver loop, one Ready at a time:
//   1. rd = raft.GetReady()  (only when HasReady())
//   2. persist rd.snapshot, rd.entries and rd.hard_state, durably (one fsync)
//      when rd.MustSync(); entries replace any stored entries at and after
//      rd.entries.front().index;
//   3. send rd.messages (only after step 2: votes and acknowledgements
//      promise that the state is on disk), except those for which
//      rd.SendableBeforePersist() holds, which may go before step 2;
//   4. apply rd.snapshot then rd.committed_entries to the state machine;
//      serve rd.read_states once the state machine has applied their index;
//   5. raft.Advance(rd).
// No other method may be called between GetReady() and Advance().
//
// Protocol (section numbers: Ongaro & Ousterhout 2014 "the paper", Ongaro 2014
// "the dissertation"): leader election with randomised timeouts (paper 5.2),
// the up-to-date vote restriction (5.4.1), PreVote and CheckQuorum
// (dissertation 9.6), log replication with per-follower flow control (5.3),
// the current-term commit rule (5.4.2), snapshots and InstallSnapshot (7),
// one-server membership change with the configuration taken from the latest
// log entry (dissertation 4.1, with the fix that a leader commits an entry
// of its own term before it proposes a change), leadership transfer
// (dissertation 3.10) and ReadIndex reads (dissertation 6.4).
//
// Thread safety: none; one thread owns a Raft.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/raft/limits.h"
#include "coordinator/raft/progress.h"
#include "coordinator/raft/rand.h"
#include "coordinator/raft/types.h"
#include "core/status.h"

namespace cohort::coordinator::raft {

struct Config {
  NodeId id = kNoNode;
  // Followers start an election after a random timeout in
  // [election_tick, 2 * election_tick) ticks without hearing from a leader;
  // leaders send heartbeats every heartbeat_tick ticks. election_tick must
  // exceed heartbeat_tick.
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  uint64_t seed = 1;  // randomised election timeouts derive from it
  size_t max_inflight_msgs = limits::kMaxInflightMsgs;
  size_t max_entries_per_msg = limits::kMaxEntriesPerMsg;
  size_t max_bytes_per_msg = limits::kMaxBytesPerMsg;
};

// What a node starts from: Bootstrap(voters) for a founding member of a new
// cluster, an empty InitialState for a server that waits to be added, or what
// Storage recovered. The state machine must already reflect snapshot.data;
// the entries after it are re-applied from the log up to the commit index.
struct InitialState {
  HardState hard_state;
  Snapshot snapshot;           // meta.index 0 for a fresh node
  std::vector<Entry> entries;  // contiguous, starting at snapshot.meta.index + 1
};

// The state of a node in a brand-new cluster: the initial configuration as
// one committed AddNode entry per voter at term 1 (indexes 1..n), the way
// etcd bootstraps. Every founding member starts from the same entries, and a
// server added later receives them with the rest of the log, so it learns the
// full membership history. A server that joins later starts from an empty
// InitialState instead.
InitialState Bootstrap(const std::vector<NodeId>& voters);

struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};

struct Ready {
  SoftState soft_state;
  std::optional<HardState> hard_state;   // set when it changed
  std::vector<Entry> entries;            // to persist before sending
  std::optional<Snapshot> snapshot;      // received from a leader: persist and apply
  std::vector<Entry> committed_entries;  // to apply, in order
  std::vector<Message> messages;         // to send after persisting
  std::vector<ReadState> read_states;
  // An fsync is needed before the messages go out: the term, the vote,
  // entries or a snapshot changed. A commit-index-only change need not be
  // synced (a restart re-learns the commit index from the leader).
  bool must_sync = false;
  bool MustSync() const { return must_sync; }
  // The term or the vote differs from the last persisted hard state.
  bool term_or_vote_changed = false;
  // Dissertation 10.2.1: a leader may send its appends (and heartbeats) in
  // parallel with writing its own log, i.e. before step 2. Safe because the
  // leader's own entries count toward a commit only once Advance reports them
  // stable, and these messages promise nothing about the leader's disk. Not
  // when this Ready changes the term or vote: a message of a new term must not
  // leave before that term is durable.
  bool SendableBeforePersist(const Message& m) const {
    return soft_state.role == Role::kLeader && !term_or_vote_changed &&
           (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat);
  }
};

class Raft {
 public:
  // COHORT_CHECKs that `state` is self-consistent (entries contiguous after
  // the snapshot, commit within the log).
  Raft(const Config& config, InitialState state);

  // Feeds one message from the network. Messages for another node or of an
  // older term are ignored as the protocol says; never fails.
  void Step(const Message& m);
  // One logical clock tick.
  void Tick();

  // Starts an election now (a follower whose timeout fired would do the same).
  void Campaign();
  // Appends a command on the leader and returns its index. FailedPrecondition
  // (not the leader, or a leadership transfer is in progress), Unavailable
  // (too many uncommitted entries), InvalidArgument (over kMaxEntryBytes).
  // An index returned is no promise: the entry commits only if it is later
  // applied with the same term.
  Result<uint64_t> Propose(std::string data);
  // Proposes a one-server membership change. FailedPrecondition when not the
  // leader, when a change is still uncommitted, or before this leader has
  // committed an entry of its term; InvalidArgument for an add of a member,
  // a removal of a non-member or of the last voter, or too many voters.
  Result<uint64_t> ProposeConfChange(const ConfChange& cc);
  // Leader only: hands leadership to `to` once its log is up to date. Aborted
  // if not done within an election timeout.
  Status TransferLeadership(NodeId to);
  // Requests a linearizable read; `request_id` comes back in a ReadState.
  // Unavailable when there is no known leader, or the leader has not yet
  // committed an entry of its term, or too many reads are pending. A request
  // forwarded to the leader may be lost with the message: callers time out.
  Status ReadIndex(uint64_t request_id);
  // The driver could not deliver a snapshot (or did): lets the leader retry
  // without waiting for the snapshot timeout.
  void ReportSnapshot(NodeId to, bool ok);

  // Compacts the log: the state machine's state at `index` (<= applied) is
  // `data`. Returns the snapshot, which the driver persists; FailedPrecondition
  // when index is not above the last snapshot or above applied.
  Result<Snapshot> CreateSnapshot(uint64_t index, std::string data);

  bool HasReady() const;
  Ready GetReady();
  void Advance(const Ready& rd);

  // ---- Introspection (tests, simulator, status reporting) ----
  NodeId id() const { return id_; }
  uint64_t term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId leader() const { return lead_; }
  Role role() const { return role_; }
  uint64_t commit() const { return commit_; }
  uint64_t applied() const { return applied_; }
  uint64_t first_index() const { return snapshot_.meta.index + 1; }
  uint64_t last_index() const { return snapshot_.meta.index + entries_.size(); }
  uint64_t stabled() const { return stabled_; }
  // Term of the entry at `index`; nullopt when compacted away or past the end.
  std::optional<uint64_t> TermAt(uint64_t index) const;
  // Entry at `index` (first_index() <= index <= last_index()).
  const Entry& EntryAt(uint64_t index) const;
  const SnapshotMeta& snapshot_meta() const { return snapshot_.meta; }
  const ConfState& conf() const { return conf_; }
  const std::map<NodeId, Progress>& progress() const { return progress_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  HardState hard_state() const { return {term_, vote_, commit_}; }
  int randomized_election_timeout() const { return randomized_election_timeout_; }

 private:
  struct PendingRead {
    uint64_t seq = 0;  // heartbeat context that confirms it
    uint64_t index = 0;
    uint64_t request_id = 0;
    NodeId from = kNoNode;
    std::vector<NodeId> acks;
  };

  void BecomeFollower(uint64_t term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();
  void DoCampaign(bool pre_vote, bool transfer);
  void Poll(NodeId from, bool granted, bool pre_vote);
  bool Promotable() const { return conf_.Contains(id_); }
  size_t Quorum() const { return conf_.voters.size() / 2 + 1; }
  bool IsUpToDate(uint64_t last_term, uint64_t last_index) const;
  uint64_t LastTerm() const;

  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleVote(const Message& m);
  void HandleAppResp(const Message& m, Progress& pr);
  void HandleHeartbeatResp(const Message& m, Progress& pr);
  void HandleReadIndexOnLeader(NodeId from, uint64_t request_id);
  void ReleaseRead(const PendingRead& r);

  void Send(Message m);
  bool SendAppend(NodeId to, bool send_if_empty);
  void BroadcastAppend();
  void BroadcastHeartbeat(uint64_t context);
  bool MaybeCommit();
  bool QuorumActive();
  void TickElection();
  void TickHeartbeat();
  void CheckSelfRemoval();

  // Log.
  void AppendToLog(std::vector<Entry> ents);  // entries follow last_index()
  void TruncateFrom(uint64_t index);          // drops entries >= index
  void CommitTo(uint64_t index);
  bool MatchTerm(uint64_t index, uint64_t term) const;
  void ApplyConfEntry(const Entry& e);
  void RecomputeConf();
  ConfState ConfAt(uint64_t index) const;
  void SyncProgressWithConf();
  uint64_t AppliableUpTo() const;

  Config cfg_;
  NodeId id_;
  Rng rng_;

  uint64_t term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;

  // Log: snapshot_ covers [1, snapshot_.meta.index]; entries_ hold
  // (snapshot index, last_index()]. Invariant: applied_ <= commit_ <= last.
  Snapshot snapshot_;
  std::deque<Entry> entries_;
  uint64_t commit_ = 0;
  uint64_t applied_ = 0;
  uint64_t stabled_ = 0;           // entries <= stabled_ are on the driver's disk
  bool snapshot_pending_ = false;  // snapshot_ came from a leader, not yet persisted

  // Configuration: the latest in the log (conf_index_ its entry; 0 when it
  // comes from the snapshot).
  ConfState conf_;
  uint64_t conf_index_ = 0;

  std::map<NodeId, Progress> progress_;  // leader only: one per voter, self included
  std::map<NodeId, bool> votes_;         // candidate only
  NodeId lead_transferee_ = kNoNode;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;

  std::deque<PendingRead> pending_reads_;  // leader only, oldest first
  uint64_t read_seq_ = 0;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  HardState prev_hard_state_;
  SoftState prev_soft_state_;
  bool ready_outstanding_ = false;
};

}  // namespace cohort::coordinator::raft
