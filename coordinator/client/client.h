#pragma once
// Client library of the coordinator's key-value and status API
// (proto/coordinator.proto, service Coordinator).
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
// holds the last error seen), Aborted (a stale sequence number).
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

#include "coordinator/server/rpc_limits.h"
#include "core/status.h"

namespace cohort::coordinator {

struct ClientOptions {
  std::vector<std::string> endpoints;  // "host:port", at most limits::kMaxEndpoints
  std::string token;                   // the cluster's shared secret
  std::chrono::milliseconds deadline = limits::kClientDefaultDeadline;  // per operation, retries included
  std::chrono::milliseconds attempt_timeout = limits::kClientAttemptTimeout;
  uint64_t client_id = 0;  // 0: a random id
  std::string tls_ca_pem;  // non-empty: TLS, servers verified against this CA (PEM contents)
};

struct PutResult {
  std::optional<std::string> previous;
  uint64_t index = 0;  // log index of the write
};

struct CasResult {
  bool swapped = false;
  std::optional<std::string> previous;  // the value before (the current one when not swapped)
  uint64_t index = 0;
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
};

// Splits "host:port,host:port"; InvalidArgument when empty or too many.
Result<std::vector<std::string>> ParseEndpoints(const std::string& spec);

class Client {
 public:
  // InvalidArgument for no endpoints or an empty token.
  static Result<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<PutResult> Put(const std::string& key, const std::string& value);
  // Swaps in `value` when the key holds `expected` (nullopt: when absent).
  Result<CasResult> Cas(const std::string& key, const std::optional<std::string>& expected, const std::string& value);
  // Linearizable read; nullopt when the key is absent.
  Result<std::optional<std::string>> Get(const std::string& key);
  // One attempt at one endpoint (no leader needed).
  Result<NodeStatus> StatusOf(const std::string& endpoint);

  uint64_t client_id() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort::coordinator
