#pragma once
// Inside a coordinator node (coordinator/server/node.h, whose header comment
// says which thread owns what): Node::Impl, the state the Raft thread, the
// gRPC services and the public Node share, and the request a gRPC thread
// hands to the Raft thread. Internal to cohort_coord_server.
//
// Where each part lives:
//   node.cc               Node: Start (validate, recover, credentials,
//                         server, threads), Shutdown, Wait, Metrics
//   driver.cc             the Raft thread (RaftLoop, RunRound, requests,
//                         apply, reads, watches, leases) and its inbox
//   raft_service.cc       the Raft service (peers' Step RPCs)
//   client_service.cc     the Coordinator service (the client API)
//   peer_transport.h      PeerSender: one sender thread per peer
//   metrics_interceptor.h counts every RPC and its errors by method
//   rpc_common.h          token check, Status -> gRPC status
//   convert.h             raft types and the job view <-> protobuf

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coordinator/controller/job_controller.h"
#include "coordinator/kv/kv_state_machine.h"
#include "coordinator/raft/raft.h"
#include "coordinator/server/convert.h"
#include "coordinator/server/node.h"
#include "coordinator/server/peer_transport.h"
#include "coordinator/storage/wal.h"
#include "core/clock.h"
#include "proto/coordinator.grpc.pb.h"

namespace cohort::coordinator {

using Clock = std::chrono::steady_clock;

// One client request's rendezvous between a gRPC thread and the Raft thread.
// Shared: the gRPC thread may give up (deadline) before the Raft thread
// answers, and the late answer then goes nowhere.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;                 // guarded by mu
  Status status;                     // guarded by mu
  raft::NodeId leader_hint = 0;      // guarded by mu: with a redirect
  KvResult result;                   // guarded by mu: writes
  uint64_t index = 0;                // guarded by mu: commit index (writes) or read index
  std::optional<std::string> value;  // guarded by mu: reads
  std::string payload;               // guarded by mu: a query's serialized answer
  Clock::time_point deadline;        // immutable

  // Answers once; later answers are ignored.
  void Complete(Status s, raft::NodeId leader = 0, KvResult r = {}, uint64_t idx = 0,
                std::optional<std::string> v = std::nullopt) {
    std::lock_guard<std::mutex> lock(mu);
    if (done) return;
    status = std::move(s);
    leader_hint = leader;
    result = std::move(r);
    index = idx;
    value = std::move(v);
    done = true;
    cv.notify_all();
  }
  void CompletePayload(std::string p, uint64_t idx) {
    std::lock_guard<std::mutex> lock(mu);
    if (done) return;
    payload = std::move(p);
    index = idx;
    done = true;
    cv.notify_all();
  }
  raft::NodeId LeaderHint() {
    std::lock_guard<std::mutex> lock(mu);
    return leader_hint;
  }
};

// A linearizable read, run on the Raft thread once the state machine has
// applied the read index: returns the serialized answer, or nullopt to wait
// for the next change (a watch) unless `final` (its wait is over).
using Query = std::function<std::optional<std::string>(const KvStateMachine&, uint64_t read_index,
                                                       bool final)>;

struct Request {
  enum class Kind { kPropose, kRead };
  Kind kind = Kind::kPropose;
  KvCommand cmd;  // kPropose; the leader stamps now_ms when it proposes
  Query query;    // kRead
  Clock::duration watch =
      Clock::duration::zero();  // kRead: how long the query may wait for a change
  std::shared_ptr<Waiter> waiter;
};

// Wall clock in ms since the Unix epoch (core/clock.h): the timestamps the
// leader writes into commands (heartbeats, lease deadlines). Never read while
// applying.
inline uint64_t WallMs() { return static_cast<uint64_t>(WallClockMs()); }

// What Status reports, copied out of the Raft thread after every round.
struct StatusView {
  std::string role = "follower";
  raft::NodeId leader = 0;
  uint64_t term = 0, commit = 0, applied = 0, last = 0, snapshot = 0;
  pb::JobResponse job;  // the applied job state
};

struct Node::Impl {
  explicit Impl(NodeOptions o) : opt(std::move(o)) {}

  // ---- Called from gRPC threads (driver.cc). ----
  void Deliver(std::vector<raft::Message> msgs);
  void ReportSnapshot(raft::NodeId to, bool ok);
  // Queues a request for the Raft thread and waits for its answer. *out is
  // the waiter (set once queued); returns its status, DeadlineExceeded when
  // no answer came in time, or Unavailable when the request was not queued.
  Status Submit(Request req, grpc::ServerContext* ctx, std::shared_ptr<Waiter>* out);
  // Adds the redirect metadata and turns `s` into a gRPC status.
  grpc::Status Answer(const Status& s, raft::NodeId leader, grpc::ServerContext* ctx);
  StatusView View();

  // ---- The Raft thread (driver.cc). ----
  void RaftLoop();
  Status RunRound(bool tick);
  Status ProcessReady(raft::Ready& rd);
  void HandleRequest(Request& r);
  void ApplyEntry(const raft::Entry& e);
  void ServeReads();
  void ServeWatchers(bool tick);
  void ExpireLeases();
  void Send(raft::Message m);
  void FailPending(const std::string& why);
  void ExpireWaiters();
  Status NotLeader() const;
  void PublishView();

  NodeOptions opt;
  // Owned by the Raft thread (touched by Start() before the thread runs).
  std::unique_ptr<Wal> wal;
  std::unique_ptr<raft::Raft> raft;
  KvStateMachine kv;
  struct PendingProposal {
    uint64_t term = 0;
    std::shared_ptr<Waiter> waiter;
  };
  struct PendingRead {
    Query query;
    uint64_t index = 0;  // 0 until the leader confirmed it
    std::shared_ptr<Waiter> waiter;
    Clock::time_point watch_until;  // a watch waits for a change until then
  };
  std::map<uint64_t, PendingProposal> proposals;  // by log index
  std::map<uint64_t, PendingRead> reads;          // by request id
  // Watches whose read was served with no change yet; re-run after every
  // applied change. At most limits::kMaxWatchers.
  std::map<uint64_t, PendingRead> watchers;  // by request id
  uint64_t watched_revision = 0;             // kv.revision() when the watchers last ran
  uint64_t next_read_id = 1;
  bool was_leader = false;
  std::atomic<bool> is_leader{false};  // was_leader, for the job controller's thread
  uint64_t leader_since_ms = 0;        // wall clock when this node last became leader
  std::set<uint64_t> expiring;         // leases whose expiry this leader proposed, not yet applied
  Clock::time_point next_expiry_check{};
  uint64_t view_applied = ~0ull;  // applied index of the job in `view`

  std::map<raft::NodeId, std::unique_ptr<PeerSender>> senders;  // immutable after Start

  // Inbox from the gRPC threads to the Raft thread.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<raft::Message> inbox_msgs;                      // guarded by mu
  std::deque<Request> inbox_requests;                        // guarded by mu
  std::vector<std::pair<raft::NodeId, bool>> inbox_reports;  // guarded by mu
  bool stopping = false;                                     // guarded by mu
  bool stopped = false;                                      // guarded by mu: the Raft thread ended
  std::condition_variable stopped_cv;                        // signals `stopped` (Wait())
  Status fatal;                                              // guarded by mu

  std::mutex view_mu;
  StatusView view;  // guarded by view_mu

  // Counted for Metrics(): RPCs by the interceptor (gRPC threads), WAL syncs
  // by the Raft thread.
  void CountRpc(const std::string& method, const grpc::Status& s);
  mutable std::mutex metrics_mu;
  std::map<std::string, NodeMetrics::Rpc> rpcs;  // guarded by metrics_mu
  uint64_t wal_syncs = 0;                        // guarded by metrics_mu
  double wal_sync_seconds = 0;                   // guarded by metrics_mu

  // The services outlive the server that calls them (declared first).
  std::unique_ptr<pb::Raft::Service> raft_service;
  std::unique_ptr<pb::Coordinator::Service> client_service;
  std::unique_ptr<grpc::Server> server;
  std::thread raft_thread;
  std::unique_ptr<JobController> controller;  // acts while this node leads
  std::string bound_address;  // host:port the server listens on (immutable after Start)
  std::mutex shutdown_mu;     // serialises Shutdown()
  bool shut_down = false;     // guarded by shutdown_mu
};

// The node's two gRPC services over `n`, which outlives them.
std::unique_ptr<pb::Raft::Service> NewRaftService(Node::Impl* n);           // raft_service.cc
std::unique_ptr<pb::Coordinator::Service> NewClientService(Node::Impl* n);  // client_service.cc

}  // namespace cohort::coordinator
