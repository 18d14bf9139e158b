#pragma once
// Every bound and default of the coordinator node (its driver and its
// transport to peers), named in one place (CONTRIBUTING.md, "Limits"). The
// bounds both ends of the API hold to, and the client library's, are in
// coordinator/client/client_limits.h (included here: `limits::` in the node
// sees both).

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "coordinator/client/client_limits.h"

namespace cohort::coordinator::limits {

// ---- Node driver --------------------------------------------------------------
// One Raft tick. Heartbeat and election timeouts are whole numbers of ticks.
inline constexpr Millis kDefaultTick{10};
// Leader heartbeat interval.
inline constexpr Millis kDefaultHeartbeat{50};
// Election timeout: a follower campaigns after a random silence in
// [election, 2 * election). 300 ms = 6 missed heartbeats, and a kill -9 of
// the leader gives a new leader after ~0.3-0.6 s (well within a second).
inline constexpr Millis kDefaultElection{300};
// Entries applied between two snapshots (log compaction).
inline constexpr uint64_t kDefaultSnapshotEvery = 10000;
// Client requests (proposals, reads) queued for the Raft thread; beyond it a
// request is refused with UNAVAILABLE (back-pressure, not an unbounded queue).
inline constexpr size_t kMaxPendingRequests = 8192;
// Raft messages received and not yet stepped; beyond it they are dropped
// (Raft retransmits).
inline constexpr size_t kMaxInboxMessages = 16384;
// gRPC handler threads kept idle for the next requests (beyond it they exit).
// A pending write holds a thread; keeping them avoids a thread created and
// destroyed per request under many concurrent clients.
inline constexpr int kMaxIdleServerThreads = 512;
// How long a client request waits for its entry to apply (or its read to be
// confirmed) before DEADLINE_EXCEEDED; the client then retries.
inline constexpr Millis kMaxRequestWait{3000};
// Watches a node holds at once (each also holds one gRPC handler thread);
// beyond it a watch is refused with UNAVAILABLE.
inline constexpr size_t kMaxWatchers = 1024;
// Events in one Watch answer; beyond it `more` is set.
inline constexpr size_t kMaxWatchEvents = 1000;
// How often the leader looks for leases past their deadline, and how many
// expiry commands it proposes at a time.
inline constexpr Millis kLeaseExpiryInterval{100};
inline constexpr size_t kMaxLeaseExpiriesPerRound = 64;

// ---- Transport (node to node) -----------------------------------------------
// Messages queued to one peer; when full the newest is dropped (Raft
// tolerates loss; a dead peer must not grow memory).
inline constexpr size_t kPeerQueueMessages = 4096;
// Messages in one Step RPC.
inline constexpr size_t kMaxMessagesPerBatch = 256;
// Deadline of one Step RPC. Shorter than an election timeout so a hung peer
// costs at most one batch.
inline constexpr Millis kPeerRpcDeadline{200};
// Keepalive ping toward a peer every kPeerKeepalive; no answer within
// kPeerKeepaliveTimeout closes the connection and gRPC redials (a partition
// drops packets without an error, and TCP would hold such a connection with
// retransmissions backed off to many seconds).
inline constexpr Millis kPeerKeepalive{1000};
inline constexpr Millis kPeerKeepaliveTimeout{1000};
// Connect timeout toward a peer (gRPC's GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
// default 20 s): a dial that started during a partition is retried soon after
// it heals. Long enough for a TLS handshake on a loaded machine (50 ms cut
// them short).
inline constexpr Millis kPeerConnectTimeout{2000};

}  // namespace cohort::coordinator::limits
