#pragma once
// Plain value types of the Raft core: log entries, persistent state,
// snapshots and messages. They carry no behaviour and own all their bytes, so
// a transport can convert them to and from protobuf field by field and the
// simulator can copy, duplicate and reorder them freely.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cohort::coordinator::raft {

// Node ids are positive; 0 means "none" (no vote, no known leader).
using NodeId = uint64_t;
inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,      // application command (empty data: a leader's no-op)
  kConfChange = 1,  // data is an encoded ConfChange
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;
  bool operator==(const Entry&) const = default;
};

// One-server membership change (Raft dissertation, section 4.1). A server
// uses the latest configuration in its log, committed or not.
struct ConfChange {
  enum class Type : uint8_t { kAddNode = 0, kRemoveNode = 1 };
  Type type = Type::kAddNode;
  NodeId node = kNoNode;
  std::string Encode() const;
  // False when `data` is not a ConfChange this version wrote.
  static bool Decode(const std::string& data, ConfChange* out);
};

// The voters of a configuration, sorted and unique.
struct ConfState {
  std::vector<NodeId> voters;
  bool Contains(NodeId id) const;
  bool operator==(const ConfState&) const = default;
};

// What must be on stable storage before a message that depends on it is
// sent (Raft paper, Figure 2: currentTerm, votedFor; commit is kept so a
// restart need not re-learn it).
struct HardState {
  uint64_t term = 0;
  NodeId vote = kNoNode;
  uint64_t commit = 0;
  bool operator==(const HardState&) const = default;
};

struct SnapshotMeta {
  uint64_t index = 0;  // last log index the snapshot covers
  uint64_t term = 0;   // term of that entry
  ConfState conf;      // configuration as of `index`
  bool operator==(const SnapshotMeta&) const = default;
};

struct Snapshot {
  SnapshotMeta meta;
  std::string data;  // the state machine's serialized state
  bool operator==(const Snapshot&) const = default;
};

enum class MessageType : uint8_t {
  kPreVote,  // "would you vote for me at term+1?" (dissertation 9.6)
  kPreVoteResp,
  kVote,  // RequestVote
  kVoteResp,
  kApp,  // AppendEntries
  kAppResp,
  kHeartbeat,  // empty AppendEntries that carries commit and a read context
  kHeartbeatResp,
  kSnap,        // InstallSnapshot (the whole snapshot in one message)
  kTimeoutNow,  // leadership transfer: start an election now (dissertation 3.10)
  kReadIndex,   // follower -> leader: confirm a read index (dissertation 6.4)
  kReadIndexResp,
};
const char* MessageTypeName(MessageType t);

// One Raft message. Fields unused by a type stay at their defaults.
struct Message {
  MessageType type = MessageType::kApp;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  uint64_t term = 0;
  // kApp: term of the entry at `index`. kVote/kPreVote: term of the last entry.
  // kAppResp (reject): term of the follower's entry at reject_hint.
  uint64_t log_term = 0;
  // kApp: index preceding `entries`. kAppResp: highest matching index, or the
  // rejected index. kVote/kPreVote: last log index. kReadIndexResp: read index.
  uint64_t index = 0;
  std::vector<Entry> entries;
  uint64_t commit = 0;
  bool reject = false;
  uint64_t reject_hint = 0;  // kAppResp (reject): the follower's last index
  // kHeartbeat/kHeartbeatResp: read-confirmation round; kReadIndex and
  // kReadIndexResp: the caller's request id; kVote: kCampaignTransfer.
  uint64_t context = 0;
  std::optional<Snapshot> snapshot;  // kSnap only
};

// Vote context marking an election started by leadership transfer: voters
// answer it even while they believe a leader is alive.
inline constexpr uint64_t kCampaignTransfer = 1;

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role r);

// A read the caller may serve once its state machine has applied `index`.
struct ReadState {
  uint64_t index = 0;
  uint64_t request_id = 0;
  bool operator==(const ReadState&) const = default;
};

// Approximate in-memory payload size of an entry, for message byte budgets.
inline size_t EntryBytes(const Entry& e) { return e.data.size() + 24; }

}  // namespace cohort::coordinator::raft
