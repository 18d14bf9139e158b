#pragma once
// One running coordinator node: the Raft core (coordinator/raft) driven by a
// real clock, persisted through the WAL (coordinator/storage), replicated over
// gRPC, applying committed commands to the replicated state machine
// (coordinator/kv: key-value with revisions and leases, and the job
// registry), and answering the client API of proto/coordinator.proto.
//
// Threads:
//   - the Raft thread owns raft::Raft, the Wal and the KvStateMachine. It
//     ticks every `tick`, wakes at once for a received message or client
//     request, and for each Ready persists (one fsync when Ready::MustSync)
//     BEFORE it hands the messages to the transport - except a leader's
//     appends and heartbeats, which leave before its own fsync (dissertation
//     10.2.1) - then applies committed entries and answers waiting clients.
//     Nothing else touches those three objects.
//   - one sender thread per peer drains a bounded queue
//     (limits::kPeerQueueMessages) into Step RPCs; a slow or dead peer only
//     fills its own queue, whose overflow is dropped (Raft retransmits), so
//     the Raft thread never blocks on the network.
//   - gRPC's server threads check the token, queue a request for the Raft
//     thread (bounded, limits::kMaxPendingRequests) and wait for its answer
//     with a deadline (limits::kMaxRequestWait).
//
// Client writes are answered once their entry is applied; reads go through
// ReadIndex (Raft dissertation 6.4) and are answered once the state machine
// has applied the read index. A Watch is such a read that, finding no change
// after its revision, waits on the Raft thread (at most limits::kMaxWatchers,
// each for at most limits::kMaxWatchWait) and is re-run after every applied
// change. The leader stamps its wall clock into each command it proposes
// (now_ms) and proposes lease expiry itself (every
// limits::kLeaseExpiryInterval), so applying never reads a clock. Only the
// leader serves the client API; a follower answers FAILED_PRECONDITION
// (UNAVAILABLE when no leader is known) with the leader's id and address in
// the trailing metadata (kLeaderIdMetadata, kLeaderAddressMetadata of
// coordinator/client/rpc_metadata.h). Every RPC, Raft's included, must carry
// the shared secret in kTokenMetadata, or it is refused with
// PERMISSION_DENIED. The transport is TLS when NodeOptions names the
// certificate files (the server presents its certificate; peers and clients
// verify it against the CA), plaintext gRPC otherwise.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "coordinator/client/rpc_metadata.h"
#include "coordinator/raft/types.h"
#include "coordinator/server/rpc_limits.h"
#include "core/status.h"

namespace cohort::coordinator {

struct NodeOptions {
  raft::NodeId id = raft::kNoNode;
  // Every voter of the cluster, this node included: id -> "host:port"
  // (coordinator/client/flags.h parses --peers).
  std::map<raft::NodeId, std::string> peers;
  // Address the server binds; empty: peers[id].
  std::string listen_address;
  // Holds the WAL segments and snapshots (created if missing).
  std::string data_dir;
  // The cluster's shared secret (non-empty; coordinator/client/flags.h reads
  // a token file).
  std::string token;
  std::chrono::milliseconds tick = limits::kDefaultTick;
  std::chrono::milliseconds heartbeat = limits::kDefaultHeartbeat;  // multiple of tick
  std::chrono::milliseconds election = limits::kDefaultElection;    // > heartbeat, multiple of tick
  uint64_t snapshot_every = limits::kDefaultSnapshotEvery;  // applied entries between snapshots
  // TLS: all three PEM files, or none for plaintext. The node serves with
  // cert/key and verifies its peers' certificates against ca (a peer's
  // certificate must name its --peers host, e.g. IP:127.0.0.1).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
};

// A node's numbers for its metrics endpoint (tools/coordinator_cmd.cc):
// copied out at the time of the call.
struct NodeMetrics {
  std::string role;         // follower | candidate | leader (raft::RoleName)
  raft::NodeId leader = 0;  // 0: none known
  uint64_t term = 0, commit_index = 0, applied_index = 0, last_index = 0, snapshot_index = 0;
  uint64_t epoch = 0;                           // the job's epoch as this node applied it
  std::map<std::string, int> members_by_state;  // joining | active | failed | left -> count
  struct Rpc {
    uint64_t calls = 0;
    std::map<std::string, uint64_t> errors;  // gRPC code name (e.g. PERMISSION_DENIED) -> count
  };
  std::map<std::string, Rpc>
      rpcs;                     // "Service/Method" (e.g. "Coordinator/Put") -> counts, since start
  uint64_t wal_syncs = 0;       // WAL writes that ended in fsync
  double wal_sync_seconds = 0;  // their total time (write + fsync)
  // The job controller's breaker per member (0 closed, 1 half-open, 2 open);
  // empty unless this node leads.
  std::map<std::string, int> breakers;
};

class Node {
 public:
  // Validates the options, recovers the WAL in options.data_dir (DataLoss
  // naming the file and offset when it is corrupt; a fresh directory
  // bootstraps the cluster of options.peers), binds the server (Unavailable
  // when the address cannot be bound) and starts the threads.
  static Result<std::unique_ptr<Node>> Start(NodeOptions options);
  ~Node();  // Shutdown()
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Stops serving and joins every thread; idempotent; thread-safe.
  void Shutdown();
  // Blocks until Shutdown() is called or the Raft thread stops on a fatal
  // error (a failed WAL write: a node that cannot persist must not vote or
  // acknowledge); returns that error, or OK after Shutdown().
  Status Wait();
  // The address the server listens on, with the port the system chose when
  // the listen address asked for port 0 (host:0; single-node groups only).
  const std::string& address() const;
  // Thread-safe; cheap (a copy of the last published view and counters).
  NodeMetrics Metrics() const;

  struct Impl;

 private:
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort::coordinator
