#pragma once
// The coordinator's replicated state machine: a key-value space with
// revisions and leases, and the job registry (members, epochs with their rank
// assignment, checkpoint manifests).
//
// Every client write carries (client id, sequence number); the state machine
// keeps each client's last sequence number and its result, so a write retried
// after a timeout applies at most once and the retry gets the first answer
// (Raft dissertation, section 6.3). Sessions are bounded
// (raft::limits::kMaxClientSessions); the least recently active is evicted,
// deterministically from the log, so all replicas evict the same one.
// Commands the leader proposes on its own (lease expiry) carry client id 0
// and keep no session.
//
// Determinism: Apply reads no clock. Time enters only as `now_ms`, a wall
// clock reading the leader writes into the command when it proposes it
// (heartbeats, lease grants and keepalives, expiry). A lease expires only
// when the leader proposes kLeaseExpire and, at apply, the command's now_ms
// is past the lease's deadline (a keepalive applied in between wins).
//
// Revisions: a global counter, increased by one for every command that
// changes the key space (put, swap, add, delete, a lease's keys removed).
// Each key keeps the revision it was last modified at (mod_revision); the
// latest deletions are kept as tombstones (raft::limits::kMaxTombstones), so a
// watch can tell exactly whether a key changed after a revision.
//
// Epoch fencing: commands that change the job (join, leave, heartbeat, fail,
// checkpoint propose/commit, epoch commit) carry the writer's epoch; one that
// is not the job's current epoch is refused with FAILED_PRECONDITION
// ("stale epoch N, job is at epoch M"; Refusal::kStaleEpoch), so a worker of
// an old epoch cannot change the job. A refusal is a result like any other:
// recorded in the session, and a retry gets it again.
//
// Refusals carry a typed reason (coordinator::Refusal, job_types.h) beside
// the status code; callers switch on it, never on the message.
//
// Thread safety: none; the driver applies entries from one thread.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/kv/job_types.h"
#include "core/status.h"

namespace cohort::coordinator {

struct KvCommand {
  enum class Op : uint8_t {
    kPut = 0,
    kCas = 1,
    kAdd = 2,  // value: decimal int64 delta; the key holds a decimal counter (absent = 0)
    kDelete = 3,
    kJoin = 4,         // member, address; fenced
    kLeave = 5,        // member; fenced
    kHeartbeat = 6,    // member; fenced
    kFail = 7,         // member: mark failed (a health checker's verdict); fenced
    kCommitEpoch = 8,  // members: the new epoch's ranks in order; fenced (epoch = the current one)
    kProposeCheckpoint = 9,  // step, path (key), checksum (value); fenced
    kCommitCheckpoint = 10,  // step; fenced
    kLeaseGrant = 11,        // ttl_ms
    kLeaseKeepalive = 12,    // lease
    kLeaseRevoke = 13,       // lease
    kLeaseExpire = 14,       // lease; leader-proposed, client id 0
  };
  Op op = Op::kPut;
  uint64_t client_id = 0;  // > 0, except leader-proposed commands (0: no session)
  uint64_t seq = 0;        // > 0, increasing per client, one outstanding write
  std::string key;         // kv ops; kProposeCheckpoint: the manifest path
  std::string value;       // the new value; kAdd: the delta; kProposeCheckpoint: the checksum
  std::optional<std::string> expected;  // kCas: required current value; nullopt: must be absent
  uint64_t lease =
      0;  // put/cas/add: attach the key to this lease (0: none); lease ops: the lease id
  uint64_t epoch = 0;                // fenced ops: the writer's epoch
  uint64_t now_ms = 0;               // the proposing leader's wall clock (ms since the Unix epoch)
  uint64_t ttl_ms = 0;               // kLeaseGrant
  uint64_t step = 0;                 // checkpoint ops
  std::string member;                // member ops: the member id
  std::string address;               // kJoin: where the member can be reached
  std::vector<std::string> members;  // kCommitEpoch: member ids, rank = position

  std::string Encode() const;
  // InvalidArgument for bytes that are not a command, or over the size limits.
  // Decodes the older put/cas-only encoding too (WALs written before the registry).
  static Result<KvCommand> Decode(std::string_view data);
};

struct KvResult {
  bool ok = false;                      // put: always; cas: whether it swapped; others: not refused
  std::optional<std::string> previous;  // value before the command (kv ops)
  bool duplicate = false;               // answered from the session table
  bool stale = false;                   // seq older than the client's last: ignored
  // A refused command (fencing, unknown lease or member, checkpoint rules):
  // the code, the typed reason and a message that says why. kOk (kNone)
  // otherwise.
  StatusCode code = StatusCode::kOk;
  Refusal refusal = Refusal::kNone;
  std::string error;
  uint64_t revision = 0;  // the key space's revision after the command
  uint64_t id = 0;        // kLeaseGrant: the lease id; kCommitEpoch: the new epoch
  int64_t number = 0;     // kAdd: the counter's new value
  bool operator==(const KvResult&) const = default;
};

struct Member {
  std::string address;
  MemberState state = MemberState::kJoining;
  uint64_t last_heartbeat_ms = 0;  // leader-proposed wall clock of the last join/heartbeat
  bool operator==(const Member&) const = default;
};

struct CheckpointManifest {
  uint64_t epoch = 0;
  uint64_t step = 0;
  std::string path;
  std::string checksum;
  bool operator==(const CheckpointManifest&) const = default;
};

// A key's value with its revisions and lease.
struct KvEntry {
  std::string value;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t lease = 0;
};

// One key in a watch answer: its current value, or deleted.
struct KvEvent {
  std::string key;
  bool deleted = false;
  std::string value;
  uint64_t mod_revision = 0;
};

struct Lease {
  uint64_t ttl_ms = 0;
  uint64_t expires_at_ms = 0;  // leader-proposed deadline (now_ms + ttl_ms at grant or keepalive)
  std::set<std::string> keys;  // keys attached to the lease
};

class KvStateMachine {
 public:
  // Applies the command at log `index` (indexes increase).
  KvResult Apply(uint64_t index, const KvCommand& cmd);
  std::optional<std::string> Get(const std::string& key) const;
  const KvEntry* Find(const std::string& key) const;

  // Keys that changed after `after_revision` and match `key` (or start with
  // it when `prefix`), live and deleted, in key order. When there are more
  // than `max`, sets *more and returns the oldest changes (whole revisions:
  // all keys of one revision, even beyond `max`), so a caller that asks
  // again after the highest mod_revision returned misses none. A deletion
  // older than the kept tombstones is not reported
  // (after_revision < compacted_revision()).
  std::vector<KvEvent> Changes(const std::string& key, bool prefix, uint64_t after_revision,
                               size_t max, bool* more) const;

  // Leases whose deadline is at or before `now_ms` (the leader proposes
  // kLeaseExpire for them), at most `max`.
  std::vector<uint64_t> ExpiredLeases(uint64_t now_ms, size_t max) const;

  // The whole state, for snapshots.
  std::string Serialize() const;
  // DataLoss when `data` does not decode; the state is unchanged then.
  Status Restore(std::string_view data);

  size_t size() const { return data_.size(); }
  size_t sessions() const { return sessions_.size(); }
  uint64_t revision() const { return revision_; }
  uint64_t compacted_revision() const { return compacted_revision_; }
  uint64_t epoch() const { return epoch_; }
  const std::map<std::string, Member>& members() const { return members_; }
  // The current epoch's ranks: member id at position r has rank r.
  const std::vector<std::string>& ranks() const { return ranks_; }
  // Earlier epochs' ranks (the latest raft::limits::kMaxEpochHistory), by epoch.
  const std::map<uint64_t, std::vector<std::string>>& epoch_history() const {
    return epoch_history_;
  }
  const std::map<uint64_t, CheckpointManifest>& pending_checkpoints() const { return pending_; }
  const std::optional<CheckpointManifest>& last_checkpoint() const { return committed_; }
  const std::map<uint64_t, Lease>& leases() const { return leases_; }

 private:
  struct Session {
    uint64_t last_seq = 0;
    uint64_t last_index = 0;
    KvResult last_result;
  };
  KvResult Execute(const KvCommand& cmd);
  KvResult ExecuteKv(const KvCommand& cmd);
  KvResult ExecuteJob(const KvCommand& cmd);
  // One per job command kind (ExecuteJob dispatches).
  KvResult Join(const KvCommand& cmd);
  KvResult ChangeMember(const KvCommand& cmd);  // leave, heartbeat, fail
  KvResult CommitEpoch(const KvCommand& cmd);
  KvResult ProposeCheckpoint(const KvCommand& cmd);
  KvResult CommitCheckpoint(const KvCommand& cmd);
  KvResult ExecuteLease(const KvCommand& cmd);
  void SetKey(const std::string& key, std::string value, uint64_t lease);
  void DeleteKey(const std::string& key);  // at the current revision_
  void Detach(const std::string& key, uint64_t lease);

  std::map<std::string, KvEntry> data_;
  uint64_t revision_ = 0;
  std::deque<std::pair<uint64_t, std::string>> tombstones_;  // (revision, key), oldest first
  uint64_t compacted_revision_ = 0;  // the revision of the newest tombstone dropped
  std::map<uint64_t, Lease> leases_;
  uint64_t next_lease_ = 1;
  std::map<std::string, Member> members_;
  uint64_t epoch_ = 0;
  std::vector<std::string> ranks_;
  std::map<uint64_t, std::vector<std::string>> epoch_history_;
  std::map<uint64_t, CheckpointManifest> pending_;  // by step
  std::optional<CheckpointManifest> committed_;
  std::map<uint64_t, Session> sessions_;
};

}  // namespace cohort::coordinator
