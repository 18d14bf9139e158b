#pragma once
// The bounds of the coordinator API that both ends hold to (message size,
// token size, the longest watch, channel reconnect backoff) and the client
// library's defaults, named in one place. The node's own bounds (its queues,
// its transport to peers) are in coordinator/server/rpc_limits.h.

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace cohort::coordinator::limits {

using Millis = std::chrono::milliseconds;

// ---- Both ends ------------------------------------------------------------------
// Largest gRPC message accepted or sent (snapshots travel in one message).
inline constexpr int kMaxRpcBytes = 256 << 20;
// Token file size accepted.
inline constexpr size_t kMaxTokenBytes = 4096;
// Longest a Watch waits before it answers with no events; a longer wait is a
// loop of watches (the client library's Watch and CoordinatorStore do that).
inline constexpr Millis kMaxWatchWait{30000};
// gRPC reconnect backoff of a channel to a node (first retry, cap), the
// client's and a peer's: a restarted node is reached again within about a
// second (gRPC's default grows to 120 s). The connect timeout of a peer's
// channel is kPeerConnectTimeout (coordinator/server/rpc_limits.h); a client's
// stays gRPC's.
inline constexpr Millis kPeerReconnectMin{50};
inline constexpr Millis kPeerReconnectMax{1000};

// ---- Client library -------------------------------------------------------------
inline constexpr Millis kClientDefaultDeadline{10000};  // whole operation, retries included
inline constexpr Millis kClientAttemptTimeout{1000};    // one RPC
inline constexpr Millis kClientBackoffInitial{10};
inline constexpr Millis kClientBackoffMax{200};
inline constexpr int kClientMaxAttempts = 1000;  // besides the deadline
// Redirects followed in a row without a backoff.
inline constexpr int kClientMaxRedirects = 3;
inline constexpr size_t kMaxEndpoints = 16;

}  // namespace cohort::coordinator::limits
