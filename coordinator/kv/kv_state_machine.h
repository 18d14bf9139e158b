#pragma once
// A small replicated key-value state machine: put, compare-and-swap, get.
// Every write carries (client id, sequence number); the state machine keeps
// each client's last sequence number and its result, so a write retried after
// a timeout applies at most once and the retry gets the first answer (Raft
// dissertation, section 6.3). Sessions are bounded (limits::kMaxClientSessions);
// the least recently active is evicted, deterministically from the log, so all
// replicas evict the same one.
//
// Thread safety: none; the driver applies entries from one thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace cohort::raft {

struct KvCommand {
  enum class Op : uint8_t { kPut = 0, kCas = 1 };
  Op op = Op::kPut;
  uint64_t client_id = 0;  // > 0
  uint64_t seq = 0;        // > 0, increasing per client, one outstanding write
  std::string key;
  std::string value;                    // the new value
  std::optional<std::string> expected;  // kCas: required current value; nullopt: must be absent

  std::string Encode() const;
  // InvalidArgument for bytes that are not a command, or over the size limits.
  static Result<KvCommand> Decode(std::string_view data);
};

struct KvResult {
  bool ok = false;                      // put: always; cas: whether it swapped
  std::optional<std::string> previous;  // value before the command
  bool duplicate = false;               // answered from the session table
  bool stale = false;                   // seq older than the client's last: ignored
  bool operator==(const KvResult&) const = default;
};

class KvStateMachine {
 public:
  // Applies the command at log `index` (indexes increase).
  KvResult Apply(uint64_t index, const KvCommand& cmd);
  std::optional<std::string> Get(const std::string& key) const;

  // The whole state (data and sessions), for snapshots.
  std::string Serialize() const;
  // DataLoss when `data` does not decode; the state is unchanged then.
  Status Restore(std::string_view data);

  size_t size() const { return data_.size(); }
  size_t sessions() const { return sessions_.size(); }

 private:
  struct Session {
    uint64_t last_seq = 0;
    uint64_t last_index = 0;
    KvResult last_result;
  };
  std::map<std::string, std::string> data_;
  std::map<uint64_t, Session> sessions_;
};

}  // namespace cohort::raft
