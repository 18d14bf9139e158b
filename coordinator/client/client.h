#pragma once
// Client library of the coordinator's key-value, watch, lease, job registry
// and status API (proto/coordinator.proto, service Coordinator).
//
// It finds the leader among `endpoints`, follows a follower's redirect (the
// leader named in its trailing metadata), and retries with exponential
// backoff (limits::kClientBackoffInitial .. kClientBackoffMax, with jitter)
// until the operation's deadline. Each endpoint has a circuit breaker
// (health::CircuitBreaker): after consecutive failures it is skipped for a
// cool-down, so a dead node costs one failed attempt, not one per retry.
// Every write carries (client id, sequence number); a retry reuses the
// number, so the state machine applies it at most once and answers the retry
// with the first result (Raft dissertation 6.3).
//
// Errors: PermissionDenied (wrong token), InvalidArgument (key/value over
// the limits), DeadlineExceeded (no success before the deadline: the message
// holds the last error seen), Aborted (a stale sequence number),
// FailedPrecondition from the registry (a stale epoch: "stale epoch N, job is
// at epoch M"; a checkpoint or member rule) and NotFound (an unknown lease or
// member). These last ones are answers, not retried; their typed reason is
// RefusalOf(status) (coordinator/kv/job_types.h): switch on it, not on the
// message.
//
// Thread safety: none. A client has one write outstanding at a time (the
// sessions of the state machine require it); use one Client per thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/client/client_limits.h"
#include "coordinator/client/flags.h"  // ParseEndpoints, for ClientOptions::endpoints
#include "coordinator/kv/job_types.h"
#include "core/status.h"

namespace cohort::coordinator {

struct ClientOptions {
  std::vector<std::string> endpoints;  // "host:port", at most limits::kMaxEndpoints
  std::string token;                   // the cluster's shared secret
  std::chrono::milliseconds deadline =
      limits::kClientDefaultDeadline;  // per operation, retries included
  std::chrono::milliseconds attempt_timeout = limits::kClientAttemptTimeout;
  uint64_t client_id = 0;  // 0: a random id
  std::string tls_ca_pem;  // non-empty: TLS, servers verified against this CA (PEM contents)
};

struct PutResult {
  std::optional<std::string> previous;
  uint64_t index = 0;     // log index of the write
  uint64_t revision = 0;  // the key's mod_revision
};

struct CasResult {
  bool swapped = false;
  std::optional<std::string> previous;  // the value before (the current one when not swapped)
  uint64_t index = 0;
  uint64_t revision = 0;
};

struct WatchEvent {
  std::string key;
  bool deleted = false;
  std::string value;
  uint64_t mod_revision = 0;
};

struct WatchResult {
  std::vector<WatchEvent> events;  // empty: the timeout passed with no change
  uint64_t revision = 0;           // the key space's revision when answered: watch again after it
  bool more = false;  // more changes than one answer: watch again after the last mod_revision
};

struct MemberInfo {
  std::string id;
  std::string address;
  MemberState state = MemberState::kJoining;  // MemberStateName() prints it
  uint64_t last_heartbeat_ms = 0;
  int rank = -1;  // -1: not in the current epoch
};

struct CheckpointInfo {
  uint64_t epoch = 0;
  uint64_t step = 0;
  std::string path;
  std::string checksum;
};

struct JobInfo {
  uint64_t epoch = 0;
  std::vector<MemberInfo> members;
  std::vector<std::string> ranks;  // member ids of the current epoch, in rank order
  std::optional<CheckpointInfo> last_checkpoint;
  std::vector<CheckpointInfo> pending;
  uint64_t revision = 0;
};

// One node's own view of the cluster.
struct NodeStatus {
  uint64_t node_id = 0;
  std::string role;
  uint64_t leader_id = 0;
  std::string leader_address;
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t last_index = 0;
  uint64_t snapshot_index = 0;
  uint64_t epoch = 0;
  std::vector<std::pair<uint64_t, std::string>> nodes;  // id, address
  JobInfo job;  // this node's applied view (not linearizable; GetJob is)
};

class Client {
 public:
  // InvalidArgument for no endpoints or an empty token.
  static Result<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `lease` non-zero: the key is deleted when the lease expires or is revoked
  // (NotFound when the lease does not exist).
  Result<PutResult> Put(const std::string& key, const std::string& value, uint64_t lease = 0);
  // Swaps in `value` when the key holds `expected` (nullopt: when absent).
  Result<CasResult> Cas(const std::string& key, const std::optional<std::string>& expected,
                        const std::string& value, uint64_t lease = 0);
  // Linearizable read; nullopt when the key is absent.
  Result<std::optional<std::string>> Get(const std::string& key);
  // Whether the key existed.
  Result<bool> Delete(const std::string& key);
  // Adds to a decimal int64 counter (absent = 0) and returns the new value.
  Result<int64_t> Add(const std::string& key, int64_t delta, uint64_t lease = 0);
  // Long poll (server side): answers once `key` (every key starting with it
  // when `prefix`) has a change after `after_revision`, or with no events
  // when `timeout` (at most limits::kMaxWatchWait) passes. after_revision 0
  // answers at once with the current keys. Linearizable; a leader change is
  // retried with the same after_revision.
  Result<WatchResult> Watch(const std::string& key, bool prefix, uint64_t after_revision,
                            std::chrono::milliseconds timeout);

  // ---- Leases: the leader expires them by its clock (TTL in ms). ----
  Result<uint64_t> GrantLease(std::chrono::milliseconds ttl);
  Status KeepAlive(uint64_t lease);
  Status RevokeLease(uint64_t lease);

  // ---- Job registry. `epoch` is the writer's view of the job epoch; a stale
  // one is refused with FailedPrecondition. ----
  Status Join(const std::string& member, const std::string& address, uint64_t epoch);
  Status Leave(const std::string& member, uint64_t epoch);
  Status Heartbeat(const std::string& member, uint64_t epoch);
  Status MarkFailed(const std::string& member, uint64_t epoch);
  // Commits epoch + 1 with `members` in rank order; returns the new epoch.
  Result<uint64_t> CommitEpoch(uint64_t epoch, const std::vector<std::string>& members);
  Status ProposeCheckpoint(uint64_t epoch, uint64_t step, const std::string& path,
                           const std::string& checksum);
  Status CommitCheckpoint(uint64_t epoch, uint64_t step);
  // Linearizable view of the job.
  Result<JobInfo> GetJob();
  // One attempt at one endpoint (no leader needed).
  Result<NodeStatus> StatusOf(const std::string& endpoint);

  uint64_t client_id() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort::coordinator
