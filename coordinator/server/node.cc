#include "coordinator/server/node.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "coordinator/kv/kv_state_machine.h"
#include "coordinator/raft/limits.h"
#include "coordinator/raft/raft.h"
#include "coordinator/server/convert.h"
#include "coordinator/storage/file_system.h"
#include "coordinator/storage/wal.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "proto/coordinator.grpc.pb.h"
#include "coordinator/controller/job_controller.h"

namespace cohort::coordinator {

using Clock = std::chrono::steady_clock;
using raft::NodeId;

// ---- Helpers --------------------------------------------------------------------

Result<std::map<NodeId, std::string>> ParsePeers(const std::string& spec) {
  std::map<NodeId, std::string> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t eq = item.find('=');
    size_t colon = item.rfind(':');
    if (eq == std::string::npos || eq == 0 || colon == std::string::npos || colon < eq ||
        colon + 1 == item.size()) {
      return InvalidArgument("--peers: '" + item + "' is not ID=HOST:PORT");
    }
    NodeId id = 0;
    try {
      size_t used = 0;
      id = std::stoull(item.substr(0, eq), &used);
      if (used != eq) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      return InvalidArgument("--peers: '" + item + "' has a node id that is not a number");
    }
    if (id == raft::kNoNode) return InvalidArgument("--peers: node ids start at 1 ('" + item + "')");
    if (!out.emplace(id, item.substr(eq + 1)).second) {
      return InvalidArgument("--peers: node " + std::to_string(id) + " is listed twice");
    }
  }
  if (out.empty()) return InvalidArgument("--peers: no peers given (expected 1=HOST:PORT,2=HOST:PORT,...)");
  if (out.size() > raft::limits::kMaxVoters) {
    return InvalidArgument("--peers: " + std::to_string(out.size()) + " nodes; at most " +
                           std::to_string(raft::limits::kMaxVoters));
  }
  return out;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  Result<std::string> contents = ReadFile(path);
  if (!contents.ok()) return contents.status().WithContext("token file");
  std::string t = *contents;
  if (t.size() > limits::kMaxTokenBytes) {
    return InvalidArgument("token file " + path + " holds " + std::to_string(t.size()) + " bytes; at most " +
                           std::to_string(limits::kMaxTokenBytes));
  }
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!t.empty() && space(t.back())) t.pop_back();
  size_t start = 0;
  while (start < t.size() && space(t[start])) ++start;
  t = t.substr(start);
  if (t.empty()) return InvalidArgument("token file " + path + " is empty; put the cluster's shared secret in it");
  return t;
}

namespace {

// Constant-time comparison, so the token cannot be guessed byte by byte.
bool TokenEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool TokenOk(const grpc::ServerContext* ctx, const std::string& token) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(kTokenMetadata);
  if (it == md.end()) return false;
  return TokenEquals(std::string_view(it->second.data(), it->second.size()), token);
}

grpc::Status PermissionDenied() {
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      "missing or wrong cluster token (metadata 'cohort-token'); check --token-file");
}

grpc::StatusCode ToGrpcCode(StatusCode c) {
  switch (c) {
    case StatusCode::kOk: return grpc::StatusCode::OK;
    case StatusCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case StatusCode::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case StatusCode::kDataLoss: return grpc::StatusCode::DATA_LOSS;
    case StatusCode::kIoError: return grpc::StatusCode::INTERNAL;
    case StatusCode::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
    case StatusCode::kDeadlineExceeded: return grpc::StatusCode::DEADLINE_EXCEEDED;
    case StatusCode::kAborted: return grpc::StatusCode::ABORTED;
    case StatusCode::kFailedPrecondition: return grpc::StatusCode::FAILED_PRECONDITION;
    case StatusCode::kUnimplemented: return grpc::StatusCode::UNIMPLEMENTED;
    case StatusCode::kInternal: return grpc::StatusCode::INTERNAL;
    case StatusCode::kPermissionDenied: return grpc::StatusCode::PERMISSION_DENIED;
  }
  return grpc::StatusCode::UNKNOWN;
}

// One client request's rendezvous between a gRPC thread and the Raft thread.
// Shared: the gRPC thread may give up (deadline) before the Raft thread
// answers, and the late answer then goes nowhere.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;           // guarded by mu
  Status status;               // guarded by mu
  NodeId leader_hint = 0;      // guarded by mu: with a redirect
  raft::KvResult result;       // guarded by mu: writes
  uint64_t index = 0;          // guarded by mu: commit index (writes) or read index
  std::optional<std::string> value;  // guarded by mu: reads
  std::string payload;         // guarded by mu: a query's serialized answer
  Clock::time_point deadline;  // immutable

  // Answers once; later answers are ignored.
  void Complete(Status s, NodeId leader = 0, raft::KvResult r = {}, uint64_t idx = 0,
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
  NodeId LeaderHint() {
    std::lock_guard<std::mutex> lock(mu);
    return leader_hint;
  }
};

// A linearizable read, run on the Raft thread once the state machine has
// applied the read index: returns the serialized answer, or nullopt to wait
// for the next change (a watch) unless `final` (its wait is over).
using Query = std::function<std::optional<std::string>(const raft::KvStateMachine&, uint64_t read_index, bool final)>;

struct Request {
  enum class Kind { kPropose, kRead };
  Kind kind = Kind::kPropose;
  raft::KvCommand cmd;  // kPropose; the leader stamps now_ms when it proposes
  Query query;          // kRead
  Clock::duration watch = Clock::duration::zero();  // kRead: how long the query may wait for a change
  std::shared_ptr<Waiter> waiter;
};

// Wall clock in ms since the Unix epoch: the timestamps the leader writes
// into commands (heartbeats, lease deadlines). Never read while applying.
uint64_t WallMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// Sends Raft messages to one peer from its own thread, in batches, through a
// bounded queue. Thread-safe.
class PeerSender {
 public:
  using SnapshotReport = std::function<void(NodeId to, bool ok)>;
  PeerSender(NodeId id, const std::string& address, std::string token,
             std::shared_ptr<grpc::ChannelCredentials> creds, SnapshotReport report)
      : id_(id), token_(std::move(token)), report_(std::move(report)) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(limits::kPeerReconnectMin.count()));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(limits::kPeerReconnectMax.count()));
    // A connection whose packets vanish (a partition, not a refusal) must be
    // dropped and redialled: TCP alone keeps it and backs its retransmissions
    // off to many seconds, so after the partition heals the peer stayed
    // unreachable for 15 s and more (tests/coordinator_cluster/partition_test.sh).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(limits::kPeerKeepalive.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(limits::kPeerKeepaliveTimeout.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    // A redial made during the partition must not hang in connect() for
    // gRPC's default 20 s after it heals.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(limits::kPeerConnectTimeout.count()));
    args.SetMaxSendMessageSize(limits::kMaxRpcBytes);
    args.SetMaxReceiveMessageSize(limits::kMaxRpcBytes);
    stub_ = pb::Raft::NewStub(grpc::CreateCustomChannel(address, creds, args));
    thread_ = std::thread([this] { Loop(); });
  }
  ~PeerSender() { Stop(); }

  // Never blocks on the network. Drops the message when the queue is full.
  void Enqueue(raft::Message m) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    if (queue_.size() >= limits::kPeerQueueMessages) {
      ++dropped_;
      if (m.type == raft::MessageType::kSnap && report_) report_(id_, false);
      return;
    }
    queue_.push_back(std::move(m));
    cv_.notify_one();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    while (true) {
      std::vector<raft::Message> batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        while (!queue_.empty() && batch.size() < limits::kMaxMessagesPerBatch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      pb::StepRequest req;
      bool has_snapshot = false;
      for (const raft::Message& m : batch) {
        ToProto(m, req.add_messages());
        has_snapshot |= m.type == raft::MessageType::kSnap;
      }
      grpc::ClientContext ctx;
      ctx.AddMetadata(kTokenMetadata, token_);
      ctx.set_deadline(std::chrono::system_clock::now() + (has_snapshot ? limits::kPeerRpcDeadline * 50 : limits::kPeerRpcDeadline));
      pb::StepResponse resp;
      grpc::Status s = stub_->Step(&ctx, req, &resp);
      if (!s.ok()) {
        if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED &&
            Clock::now() - last_token_error_ > std::chrono::seconds(5)) {
          last_token_error_ = Clock::now();  // at most one line per 5 s
          COHORT_LOG_ERROR("node {} refused our token: {}; check that every node has the same --token-file", id_,
                           s.error_message());
        }
        COHORT_LOG_DEBUG("send to node {} failed: {}", id_, s.error_message());
      }
      if (has_snapshot && report_) report_(id_, s.ok());
    }
  }

  const NodeId id_;
  const std::string token_;
  const SnapshotReport report_;
  std::unique_ptr<pb::Raft::Stub> stub_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<raft::Message> queue_;  // guarded by mu_; at most kPeerQueueMessages
  bool stop_ = false;                // guarded by mu_
  uint64_t dropped_ = 0;             // guarded by mu_
  Clock::time_point last_token_error_{};  // sender thread only
  std::thread thread_;
};

// What Status reports, copied out of the Raft thread after every round.
struct StatusView {
  std::string role = "follower";
  NodeId leader = 0;
  uint64_t term = 0, commit = 0, applied = 0, last = 0, snapshot = 0;
  pb::JobResponse job;  // the applied job state
};

void FillJob(const raft::KvStateMachine& kv, pb::JobResponse* out) {
  out->set_epoch(kv.epoch());
  std::map<std::string, int> rank;
  for (size_t r = 0; r < kv.ranks().size(); ++r) rank[kv.ranks()[r]] = static_cast<int>(r);
  for (const auto& [id, m] : kv.members()) {
    pb::MemberInfo* mi = out->add_members();
    mi->set_id(id);
    mi->set_address(m.address);
    mi->set_state(static_cast<pb::MemberState>(m.state));  // same numbers (coordinator/kv/job_types.h)
    mi->set_last_heartbeat_ms(m.last_heartbeat_ms);
    auto it = rank.find(id);
    mi->set_rank(it == rank.end() ? -1 : it->second);
  }
  for (const std::string& id : kv.ranks()) out->add_ranks(id);
  auto fill = [](const raft::CheckpointManifest& m, pb::CheckpointInfo* c) {
    c->set_epoch(m.epoch);
    c->set_step(m.step);
    c->set_path(m.path);
    c->set_checksum(m.checksum);
  };
  if (kv.last_checkpoint()) {
    out->set_has_checkpoint(true);
    fill(*kv.last_checkpoint(), out->mutable_last_checkpoint());
  }
  for (const auto& [step, m] : kv.pending_checkpoints()) fill(m, out->add_pending());
  out->set_revision(kv.revision());
}

}  // namespace

// ---- Node::Impl -------------------------------------------------------------------

struct Node::Impl {
  explicit Impl(NodeOptions o) : opt(std::move(o)) {}

  // ---- Called from gRPC threads. ----
  void Deliver(std::vector<raft::Message> msgs) {
    std::lock_guard<std::mutex> lock(mu);
    for (raft::Message& m : msgs) {
      if (inbox_msgs.size() >= limits::kMaxInboxMessages) break;  // dropped: Raft retransmits
      inbox_msgs.push_back(std::move(m));
    }
    cv.notify_one();
  }
  void ReportSnapshot(NodeId to, bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    inbox_reports.emplace_back(to, ok);
    cv.notify_one();
  }
  // Queues a request for the Raft thread and waits for its answer. *out is
  // the waiter (set once queued); returns its status, DeadlineExceeded when
  // no answer came in time, or Unavailable when the request was not queued.
  Status Submit(Request req, grpc::ServerContext* ctx, std::shared_ptr<Waiter>* out) {
    // The client's own deadline, when earlier.
    Clock::duration wait = limits::kMaxRequestWait + req.watch;
    Clock::time_point deadline = Clock::now() + wait;
    auto client_left = ctx->deadline() - std::chrono::system_clock::now();
    if (client_left < wait) {
      deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::max(client_left, std::chrono::system_clock::duration::zero()));
    }
    auto w = std::make_shared<Waiter>();
    w->deadline = deadline;
    req.waiter = w;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) return Unavailable("node " + std::to_string(opt.id) + " is shutting down");
      if (inbox_requests.size() >= limits::kMaxPendingRequests) {
        return Unavailable("node " + std::to_string(opt.id) + " has " +
                           std::to_string(limits::kMaxPendingRequests) + " requests queued; retry later");
      }
      inbox_requests.push_back(std::move(req));
      cv.notify_one();
    }
    *out = w;
    std::unique_lock<std::mutex> lock(w->mu);
    if (!w->cv.wait_until(lock, deadline, [&] { return w->done; })) {
      return DeadlineExceeded("node " + std::to_string(opt.id) +
                              ": no answer within the deadline; retry (a write keeps its sequence number)");
    }
    return w->status;
  }

  // Adds the redirect metadata and turns `s` into a gRPC status.
  grpc::Status Answer(const Status& s, NodeId leader, grpc::ServerContext* ctx) {
    if (s.ok()) return grpc::Status::OK;
    if (leader != 0) {
      ctx->AddTrailingMetadata(kLeaderIdMetadata, std::to_string(leader));
      auto it = opt.peers.find(leader);
      if (it != opt.peers.end()) ctx->AddTrailingMetadata(kLeaderAddressMetadata, it->second);
    }
    if (s.detail() != 0) ctx->AddTrailingMetadata(kRefusalMetadata, std::to_string(s.detail()));
    return grpc::Status(ToGrpcCode(s.code()), s.message());
  }

  StatusView View() {
    std::lock_guard<std::mutex> lock(view_mu);
    return view;
  }

  // ---- The Raft thread. ----
  void RaftLoop();
  Status RunRound(bool tick);
  void HandleRequest(Request& r);
  void ApplyEntry(const raft::Entry& e);
  void ServeReads();
  void ServeWatchers(bool changed);
  void ExpireLeases();
  void Send(raft::Message m);
  void FailPending(const std::string& why);
  void ExpireWaiters();
  Status NotLeader() const;
  void PublishView();

  NodeOptions opt;
  // Owned by the Raft thread (touched by Start() before the thread runs).
  std::unique_ptr<raft::Wal> wal;
  std::unique_ptr<raft::Raft> raft;
  raft::KvStateMachine kv;
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
  uint64_t leader_since_ms = 0;      // wall clock when this node last became leader
  std::set<uint64_t> expiring;       // leases whose expiry this leader proposed, not yet applied
  Clock::time_point next_expiry_check{};
  uint64_t view_applied = ~0ull;     // applied index of the job in `view`

  std::map<NodeId, std::unique_ptr<PeerSender>> senders;  // immutable after Start

  // Inbox from the gRPC threads to the Raft thread.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<raft::Message> inbox_msgs;                 // guarded by mu
  std::deque<Request> inbox_requests;                   // guarded by mu
  std::vector<std::pair<NodeId, bool>> inbox_reports;   // guarded by mu
  bool stopping = false;                                // guarded by mu
  bool stopped = false;                                 // guarded by mu: the Raft thread ended
  std::condition_variable stopped_cv;                   // signals `stopped` (Wait())
  Status fatal;                                         // guarded by mu

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
  std::mutex shutdown_mu;  // serialises Shutdown()
  bool shut_down = false;  // guarded by shutdown_mu
};

namespace {

class RaftServiceImpl final : public pb::Raft::Service {
 public:
  explicit RaftServiceImpl(Node::Impl* n) : n_(n) {}
  grpc::Status Step(grpc::ServerContext* ctx, const pb::StepRequest* req, pb::StepResponse*) override {
    if (!TokenOk(ctx, n_->opt.token)) return PermissionDenied();
    std::vector<raft::Message> msgs;
    msgs.reserve(req->messages_size());
    for (const pb::Message& m : req->messages()) {
      Result<raft::Message> rm = FromProto(m);
      if (!rm.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, rm.status().message());
      msgs.push_back(std::move(rm).value());
    }
    n_->Deliver(std::move(msgs));
    return grpc::Status::OK;
  }

 private:
  Node::Impl* n_;
};

Status CheckKey(const std::string& key) {
  if (key.empty()) return InvalidArgument("empty key");
  if (key.size() > raft::limits::kMaxKeyBytes) {
    return InvalidArgument("key of " + std::to_string(key.size()) + " bytes; at most " +
                           std::to_string(raft::limits::kMaxKeyBytes));
  }
  return Status::Ok();
}

Status CheckWrite(const std::string& key, const std::string& value, uint64_t client_id, uint64_t seq) {
  COHORT_RETURN_IF_ERROR(CheckKey(key));
  if (value.size() > raft::limits::kMaxValueBytes) {
    return InvalidArgument("value of " + std::to_string(value.size()) + " bytes; at most " +
                           std::to_string(raft::limits::kMaxValueBytes));
  }
  if (client_id == 0 || seq == 0) return InvalidArgument("client_id and seq must be positive");
  return Status::Ok();
}

// A registry string (member id, address, path, checksum): bounded like a key.
Status CheckName(const char* what, const std::string& s, bool may_be_empty = false) {
  if (s.empty() && !may_be_empty) return InvalidArgument(std::string("empty ") + what);
  if (s.size() > raft::limits::kMaxKeyBytes) {
    return InvalidArgument(std::string(what) + " of " + std::to_string(s.size()) + " bytes; at most " +
                           std::to_string(raft::limits::kMaxKeyBytes));
  }
  return Status::Ok();
}

Status CheckSession(uint64_t client_id, uint64_t seq) {
  if (client_id == 0 || seq == 0) return InvalidArgument("client_id and seq must be positive");
  return Status::Ok();
}

class CoordinatorServiceImpl final : public pb::Coordinator::Service {
 public:
  explicit CoordinatorServiceImpl(Node::Impl* n) : n_(n) {}

  grpc::Status Put(grpc::ServerContext* ctx, const pb::PutRequest* req, pb::PutResponse* resp) override {
    raft::KvCommand cmd = Cmd(raft::KvCommand::Op::kPut, req->client_id(), req->seq());
    cmd.key = req->key();
    cmd.value = req->value();
    cmd.lease = req->lease();
    return Write(ctx, CheckWrite(req->key(), req->value(), req->client_id(), req->seq()), cmd,
                 [&](const Waiter& w) {
                   if (w.result.previous) resp->set_previous(*w.result.previous);
                   resp->set_index(w.index);
                   resp->set_revision(w.result.revision);
                 });
  }

  grpc::Status Cas(grpc::ServerContext* ctx, const pb::CasRequest* req, pb::CasResponse* resp) override {
    raft::KvCommand cmd = Cmd(raft::KvCommand::Op::kCas, req->client_id(), req->seq());
    cmd.key = req->key();
    cmd.value = req->value();
    cmd.lease = req->lease();
    if (req->has_expected()) cmd.expected = req->expected();
    return Write(ctx, CheckWrite(req->key(), req->value(), req->client_id(), req->seq()), cmd,
                 [&](const Waiter& w) {
                   resp->set_swapped(w.result.ok);
                   if (w.result.previous) resp->set_previous(*w.result.previous);
                   resp->set_index(w.index);
                   resp->set_revision(w.result.revision);
                 });
  }

  grpc::Status Delete(grpc::ServerContext* ctx, const pb::DeleteRequest* req, pb::DeleteResponse* resp) override {
    raft::KvCommand cmd = Cmd(raft::KvCommand::Op::kDelete, req->client_id(), req->seq());
    cmd.key = req->key();
    return Write(ctx, CheckWrite(req->key(), "", req->client_id(), req->seq()), cmd, [&](const Waiter& w) {
      resp->set_deleted(w.result.ok);
      resp->set_revision(w.result.revision);
    });
  }

  grpc::Status Add(grpc::ServerContext* ctx, const pb::AddRequest* req, pb::AddResponse* resp) override {
    raft::KvCommand cmd = Cmd(raft::KvCommand::Op::kAdd, req->client_id(), req->seq());
    cmd.key = req->key();
    cmd.value = std::to_string(req->delta());
    cmd.lease = req->lease();
    return Write(ctx, CheckWrite(req->key(), "", req->client_id(), req->seq()), cmd, [&](const Waiter& w) {
      resp->set_value(w.result.number);
      resp->set_revision(w.result.revision);
    });
  }

  grpc::Status Member(grpc::ServerContext* ctx, const pb::MemberRequest* req, pb::JobWriteResponse* resp) override {
    raft::KvCommand::Op op = raft::KvCommand::Op::kJoin;
    switch (req->op()) {
      case pb::MEMBER_JOIN: op = raft::KvCommand::Op::kJoin; break;
      case pb::MEMBER_LEAVE: op = raft::KvCommand::Op::kLeave; break;
      case pb::MEMBER_HEARTBEAT: op = raft::KvCommand::Op::kHeartbeat; break;
      case pb::MEMBER_FAIL: op = raft::KvCommand::Op::kFail; break;
      default: return n_->Answer(InvalidArgument("unknown member operation"), 0, ctx);
    }
    raft::KvCommand cmd = Cmd(op, req->client_id(), req->seq());
    cmd.member = req->member();
    cmd.address = req->address();
    cmd.epoch = req->epoch();
    cohort::Status v = CheckSession(req->client_id(), req->seq());
    if (v.ok()) v = CheckName("member id", req->member());
    if (v.ok()) v = CheckName("member address", req->address(), /*may_be_empty=*/true);
    return Write(ctx, v, cmd, [&](const Waiter& w) {
      resp->set_index(w.index);
      resp->set_epoch(req->epoch());
    });
  }

  grpc::Status CommitEpoch(grpc::ServerContext* ctx, const pb::CommitEpochRequest* req,
                           pb::JobWriteResponse* resp) override {
    raft::KvCommand cmd = Cmd(raft::KvCommand::Op::kCommitEpoch, req->client_id(), req->seq());
    cmd.epoch = req->epoch();
    cohort::Status v = CheckSession(req->client_id(), req->seq());
    if (v.ok() && static_cast<size_t>(req->members_size()) > raft::limits::kMaxMembers) {
      v = InvalidArgument(std::to_string(req->members_size()) + " members; at most " +
                          std::to_string(raft::limits::kMaxMembers));
    }
    for (const std::string& m : req->members()) {
      if (v.ok()) v = CheckName("member id", m);
      cmd.members.push_back(m);
    }
    return Write(ctx, v, cmd, [&](const Waiter& w) {
      resp->set_index(w.index);
      resp->set_epoch(w.result.id);
    });
  }

  grpc::Status Checkpoint(grpc::ServerContext* ctx, const pb::CheckpointRequest* req,
                          pb::JobWriteResponse* resp) override {
    raft::KvCommand cmd = Cmd(req->commit() ? raft::KvCommand::Op::kCommitCheckpoint
                                            : raft::KvCommand::Op::kProposeCheckpoint,
                              req->client_id(), req->seq());
    cmd.epoch = req->epoch();
    cmd.step = req->step();
    cmd.key = req->path();
    cmd.value = req->checksum();
    cohort::Status v = CheckSession(req->client_id(), req->seq());
    if (v.ok()) v = CheckName("checkpoint path", req->path(), /*may_be_empty=*/req->commit());
    if (v.ok()) v = CheckName("checkpoint checksum", req->checksum(), /*may_be_empty=*/true);
    return Write(ctx, v, cmd, [&](const Waiter& w) {
      resp->set_index(w.index);
      resp->set_epoch(req->epoch());
    });
  }

  grpc::Status Lease(grpc::ServerContext* ctx, const pb::LeaseRequest* req, pb::LeaseResponse* resp) override {
    raft::KvCommand::Op op = raft::KvCommand::Op::kLeaseGrant;
    switch (req->op()) {
      case pb::LEASE_GRANT: op = raft::KvCommand::Op::kLeaseGrant; break;
      case pb::LEASE_KEEPALIVE: op = raft::KvCommand::Op::kLeaseKeepalive; break;
      case pb::LEASE_REVOKE: op = raft::KvCommand::Op::kLeaseRevoke; break;
      default: return n_->Answer(InvalidArgument("unknown lease operation"), 0, ctx);
    }
    raft::KvCommand cmd = Cmd(op, req->client_id(), req->seq());
    cmd.lease = req->lease();
    cmd.ttl_ms = req->ttl_ms();
    return Write(ctx, CheckSession(req->client_id(), req->seq()), cmd, [&](const Waiter& w) {
      resp->set_lease(w.result.id);
      resp->set_ttl_ms(req->ttl_ms());
    });
  }

  grpc::Status Get(grpc::ServerContext* ctx, const pb::GetRequest* req, pb::GetResponse* resp) override {
    std::string key = req->key();
    return Read(ctx, CheckKey(key), Clock::duration::zero(),
                [key](const raft::KvStateMachine& kv, uint64_t read_index, bool) -> std::optional<std::string> {
                  pb::GetResponse r;
                  const raft::KvEntry* e = kv.Find(key);
                  r.set_found(e != nullptr);
                  if (e) {
                    r.set_value(e->value);
                    r.set_mod_revision(e->mod_revision);
                  }
                  r.set_read_index(read_index);
                  r.set_revision(kv.revision());
                  return r.SerializeAsString();
                },
                resp);
  }

  grpc::Status GetJob(grpc::ServerContext* ctx, const pb::JobRequest*, pb::JobResponse* resp) override {
    return Read(ctx, cohort::Status::Ok(), Clock::duration::zero(),
                [](const raft::KvStateMachine& kv, uint64_t read_index, bool) -> std::optional<std::string> {
                  pb::JobResponse r;
                  FillJob(kv, &r);
                  r.set_read_index(read_index);
                  return r.SerializeAsString();
                },
                resp);
  }

  grpc::Status Watch(grpc::ServerContext* ctx, const pb::WatchRequest* req, pb::WatchResponse* resp) override {
    std::string key = req->key();
    bool prefix = req->prefix();
    uint64_t after = req->after_revision();
    cohort::Status v = prefix && key.size() <= raft::limits::kMaxKeyBytes ? cohort::Status::Ok() : CheckKey(key);
    auto wait = std::chrono::milliseconds(std::min<uint64_t>(req->timeout_ms(), limits::kMaxWatchWait.count()));
    return Read(ctx, v, wait,
                [key, prefix, after](const raft::KvStateMachine& kv, uint64_t, bool final) -> std::optional<std::string> {
                  bool more = false;
                  std::vector<raft::KvEvent> ev = kv.Changes(key, prefix, after, limits::kMaxWatchEvents, &more);
                  if (ev.empty() && !final) return std::nullopt;
                  pb::WatchResponse r;
                  for (raft::KvEvent& e : ev) {
                    pb::WatchEvent* pe = r.add_events();
                    pe->set_key(std::move(e.key));
                    pe->set_deleted(e.deleted);
                    pe->set_value(std::move(e.value));
                    pe->set_mod_revision(e.mod_revision);
                  }
                  r.set_revision(kv.revision());
                  r.set_more(more);
                  r.set_compacted_revision(kv.compacted_revision());
                  return r.SerializeAsString();
                },
                resp);
  }

  grpc::Status Status(grpc::ServerContext* ctx, const pb::StatusRequest*, pb::StatusResponse* resp) override {
    if (!TokenOk(ctx, n_->opt.token)) return PermissionDenied();
    StatusView v = n_->View();
    resp->set_node_id(n_->opt.id);
    resp->set_role(v.role);
    resp->set_leader_id(v.leader);
    auto it = n_->opt.peers.find(v.leader);
    if (it != n_->opt.peers.end()) resp->set_leader_address(it->second);
    resp->set_term(v.term);
    resp->set_commit_index(v.commit);
    resp->set_applied_index(v.applied);
    resp->set_last_index(v.last);
    resp->set_snapshot_index(v.snapshot);
    for (const auto& [id, addr] : n_->opt.peers) {
      pb::NodeInfo* ni = resp->add_nodes();
      ni->set_id(id);
      ni->set_address(addr);
    }
    resp->set_epoch(v.job.epoch());
    *resp->mutable_job() = std::move(v.job);
    return grpc::Status::OK;
  }

 private:
  static raft::KvCommand Cmd(raft::KvCommand::Op op, uint64_t client_id, uint64_t seq) {
    raft::KvCommand c;
    c.op = op;
    c.client_id = client_id;
    c.seq = seq;
    return c;
  }
  // Checks the token and `valid`, proposes `cmd`, and on success lets `fill`
  // read the waiter (final once done).
  grpc::Status Write(grpc::ServerContext* ctx, const cohort::Status& valid, raft::KvCommand cmd,
                     const std::function<void(const Waiter&)>& fill) {
    if (!TokenOk(ctx, n_->opt.token)) return PermissionDenied();
    if (!valid.ok()) return n_->Answer(valid, 0, ctx);
    Request r;
    r.kind = Request::Kind::kPropose;
    r.cmd = std::move(cmd);
    std::shared_ptr<Waiter> w;
    cohort::Status s = n_->Submit(std::move(r), ctx, &w);
    if (!s.ok()) return n_->Answer(s, w ? w->LeaderHint() : 0, ctx);
    fill(*w);
    return grpc::Status::OK;
  }
  // A linearizable query (ReadIndex); `watch` > 0: it may wait that long for a change.
  grpc::Status Read(grpc::ServerContext* ctx, const cohort::Status& valid, Clock::duration watch, Query query,
                    google::protobuf::Message* resp) {
    if (!TokenOk(ctx, n_->opt.token)) return PermissionDenied();
    if (!valid.ok()) return n_->Answer(valid, 0, ctx);
    Request r;
    r.kind = Request::Kind::kRead;
    r.query = std::move(query);
    r.watch = watch;
    std::shared_ptr<Waiter> w;
    cohort::Status s = n_->Submit(std::move(r), ctx, &w);
    if (!s.ok()) return n_->Answer(s, w ? w->LeaderHint() : 0, ctx);
    if (!resp->ParseFromString(w->payload)) return grpc::Status(grpc::StatusCode::INTERNAL, "bad query answer");
    return grpc::Status::OK;
  }
  Node::Impl* n_;
};

}  // namespace

// ---- RPC counts (metrics) -----------------------------------------------------------

namespace {

const char* GrpcCodeName(grpc::StatusCode c) {
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                       "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN";
}

// Counts every RPC the server answers, and its errors, by method.
class RpcCounter final : public grpc::experimental::Interceptor {
 public:
  RpcCounter(Node::Impl* n, std::string method) : n_(n), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      n_->CountRpc(method_, m->GetSendStatus());
    }
    m->Proceed();
  }

 private:
  Node::Impl* n_;
  std::string method_;
};

class RpcCounterFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcCounterFactory(Node::Impl* n) : n_(n) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    // "/cohort.coordinator.Coordinator/Put" -> "Coordinator/Put"
    std::string m = info->method() != nullptr ? info->method() : "";
    const size_t slash = m.rfind('/');
    const size_t dot = m.rfind('.', slash);
    if (slash != std::string::npos && dot != std::string::npos) m = m.substr(dot + 1);
    return new RpcCounter(n_, std::move(m));
  }

 private:
  Node::Impl* n_;
};

}  // namespace

void Node::Impl::CountRpc(const std::string& method, const grpc::Status& s) {
  std::lock_guard<std::mutex> lock(metrics_mu);
  NodeMetrics::Rpc& r = rpcs[method];
  ++r.calls;
  if (!s.ok()) ++r.errors[GrpcCodeName(s.error_code())];
}

// ---- The Raft thread ----------------------------------------------------------------

Status Node::Impl::NotLeader() const {
  NodeId lead = raft->leader();
  if (lead == raft::kNoNode || lead == opt.id) {
    return Unavailable("node " + std::to_string(opt.id) + " knows no leader (election in progress); retry");
  }
  auto it = opt.peers.find(lead);
  return FailedPrecondition("node " + std::to_string(opt.id) + " is not the leader; the leader is node " +
                            std::to_string(lead) + (it != opt.peers.end() ? " at " + it->second : std::string()));
}

void Node::Impl::HandleRequest(Request& r) {
  if (raft->role() != raft::Role::kLeader) {
    r.waiter->Complete(NotLeader(), raft->leader());
    return;
  }
  if (r.kind == Request::Kind::kPropose) {
    uint64_t term = raft->term();
    r.cmd.now_ms = WallMs();
    Result<uint64_t> idx = raft->Propose(r.cmd.Encode());
    if (!idx.ok()) {
      Status s = idx.status();
      if (s.code() == StatusCode::kFailedPrecondition) s = Unavailable(s.message() + "; retry");
      r.waiter->Complete(s, raft->leader());
      return;
    }
    // An entry a previous leader left at this index can no longer commit.
    auto old = proposals.find(*idx);
    if (old != proposals.end()) {
      old->second.waiter->Complete(Unavailable("entry overwritten by a new leader; retry"));
      proposals.erase(old);
    }
    proposals[*idx] = PendingProposal{term, r.waiter};
    return;
  }
  if (r.watch > Clock::duration::zero() && watchers.size() >= limits::kMaxWatchers) {
    r.waiter->Complete(Unavailable(std::to_string(limits::kMaxWatchers) + " watches are open on node " +
                                   std::to_string(opt.id) + "; retry later"));
    return;
  }
  if (reads.size() >= limits::kMaxPendingRequests) {
    r.waiter->Complete(Unavailable("too many reads pending on node " + std::to_string(opt.id) + "; retry"));
    return;
  }
  uint64_t id = next_read_id++;
  Status s = raft->ReadIndex(id);
  if (!s.ok()) {
    r.waiter->Complete(Unavailable(s.message() + "; retry"), raft->leader());
    return;
  }
  reads[id] = PendingRead{std::move(r.query), 0, r.waiter, Clock::now() + r.watch};
}

void Node::Impl::ApplyEntry(const raft::Entry& e) {
  raft::KvResult result;
  bool is_command = e.type == raft::EntryType::kNormal && !e.data.empty();
  bool decoded = false;
  if (is_command) {
    Result<raft::KvCommand> cmd = raft::KvCommand::Decode(e.data);
    if (cmd.ok()) {
      result = kv.Apply(e.index, *cmd);
      decoded = true;
      if (cmd->op == raft::KvCommand::Op::kLeaseExpire) expiring.erase(cmd->lease);
    } else {
      // Every replica skips the same entry, so they stay identical.
      COHORT_LOG_ERROR("log index {}: not a key-value command ({}); skipped", e.index, cmd.status().ToString());
    }
  }
  // Proposals at or below this index are decided now.
  while (!proposals.empty() && proposals.begin()->first <= e.index) {
    auto it = proposals.begin();
    if (it->first == e.index && it->second.term == e.term && decoded) {
      if (result.stale) {
        it->second.waiter->Complete(Aborted("sequence number older than this client's last write; not applied"));
      } else if (result.code != StatusCode::kOk) {
        it->second.waiter->Complete(Status(result.code, result.error, static_cast<int>(result.refusal)));  // no leader hint
      } else {
        it->second.waiter->Complete(Status::Ok(), 0, result, e.index);
      }
    } else {
      it->second.waiter->Complete(Unavailable("leader changed before the write committed; retry"));
    }
    proposals.erase(it);
  }
}

void Node::Impl::Send(raft::Message m) {
  auto it = senders.find(m.to);
  if (it != senders.end()) it->second->Enqueue(std::move(m));
}

void Node::Impl::ServeReads() {
  uint64_t applied = raft->applied();
  for (auto it = reads.begin(); it != reads.end();) {
    if (it->second.index == 0 || it->second.index > applied) {
      ++it;
      continue;
    }
    PendingRead& pr = it->second;
    std::optional<std::string> answer = pr.query(kv, pr.index, Clock::now() >= pr.watch_until);
    if (answer) {
      pr.waiter->CompletePayload(std::move(*answer), pr.index);
    } else if (watchers.size() >= limits::kMaxWatchers) {
      pr.waiter->Complete(Unavailable(std::to_string(limits::kMaxWatchers) + " watches are open on node " +
                                      std::to_string(opt.id) + "; retry later"));
    } else {
      watchers.emplace(it->first, std::move(pr));
    }
    it = reads.erase(it);
  }
}

void Node::Impl::ServeWatchers(bool tick) {
  bool changed = kv.revision() != watched_revision;
  watched_revision = kv.revision();
  if (!changed && !tick) return;
  Clock::time_point now = Clock::now();
  for (auto it = watchers.begin(); it != watchers.end();) {
    PendingRead& pr = it->second;
    bool final = now >= pr.watch_until;
    if (!changed && !final) {
      ++it;
      continue;
    }
    std::optional<std::string> answer = pr.query(kv, pr.index, final);
    if (answer) {
      pr.waiter->CompletePayload(std::move(*answer), pr.index);
      it = watchers.erase(it);
    } else {
      ++it;
    }
  }
}

void Node::Impl::ExpireLeases() {
  // The leader alone decides that a lease expired, by its clock, and says so
  // through the log (apply reads no clock). A new leader first waits one TTL:
  // the old leader may have accepted keepalives it never saw.
  Clock::time_point now = Clock::now();
  if (now < next_expiry_check) return;
  next_expiry_check = now + limits::kLeaseExpiryInterval;
  uint64_t now_ms = WallMs();
  for (uint64_t id : kv.ExpiredLeases(now_ms, limits::kMaxLeaseExpiriesPerRound)) {
    if (expiring.count(id)) continue;
    auto lease = kv.leases().find(id);
    if (lease == kv.leases().end() || now_ms < leader_since_ms + lease->second.ttl_ms) continue;
    raft::KvCommand c;
    c.op = raft::KvCommand::Op::kLeaseExpire;
    c.lease = id;
    c.now_ms = now_ms;
    if (raft->Propose(c.Encode()).ok()) expiring.insert(id);
  }
}

void Node::Impl::FailPending(const std::string& why) {
  for (auto& [idx, p] : proposals) p.waiter->Complete(Unavailable(why), raft->leader());
  proposals.clear();
  for (auto it = reads.begin(); it != reads.end();) {
    if (it->second.index != 0) {  // confirmed while leader: still valid once applied
      ++it;
      continue;
    }
    it->second.waiter->Complete(Unavailable(why), raft->leader());
    it = reads.erase(it);
  }
  // A watch is answered by the leader only; the client watches again there.
  for (auto& [id, w] : watchers) w.waiter->Complete(Unavailable(why), raft->leader());
  watchers.clear();
  expiring.clear();
}

void Node::Impl::ExpireWaiters() {
  // A waiter whose caller gave up is dropped here, so the maps stay bounded
  // even when a ReadIndex request is lost.
  Clock::time_point now = Clock::now();
  for (auto it = reads.begin(); it != reads.end();) {
    if (it->second.waiter->deadline < now) {
      it->second.waiter->Complete(DeadlineExceeded("read not confirmed in time"));
      it = reads.erase(it);
    } else {
      ++it;
    }
  }
}

void Node::Impl::PublishView() {
  StatusView v;
  v.role = raft::RoleName(raft->role());
  v.leader = raft->leader();
  v.term = raft->term();
  v.commit = raft->commit();
  v.applied = raft->applied();
  v.last = raft->last_index();
  v.snapshot = raft->snapshot_meta().index;
  bool job_changed = v.applied != view_applied;
  if (job_changed) FillJob(kv, &v.job);
  view_applied = v.applied;
  std::lock_guard<std::mutex> lock(view_mu);
  if (!job_changed) v.job = std::move(view.job);
  view = std::move(v);
}

Status Node::Impl::RunRound(bool tick) {
  std::deque<raft::Message> msgs;
  std::deque<Request> reqs;
  std::vector<std::pair<NodeId, bool>> reports;
  {
    std::lock_guard<std::mutex> lock(mu);
    msgs.swap(inbox_msgs);
    reqs.swap(inbox_requests);
    reports.swap(inbox_reports);
  }
  for (const raft::Message& m : msgs) raft->Step(m);
  for (const auto& [to, ok] : reports) raft->ReportSnapshot(to, ok);
  if (tick) raft->Tick();
  for (Request& r : reqs) HandleRequest(r);
  if (raft->role() == raft::Role::kLeader) {
    if (!was_leader) leader_since_ms = WallMs();
    ExpireLeases();
  }

  while (raft->HasReady()) {
    raft::Ready rd = raft->GetReady();
    // 1. A leader's appends and heartbeats go out before its own fsync, in
    //    parallel with it (dissertation 10.2.1; see Ready::SendableBeforePersist).
    std::vector<raft::Message> after_sync;
    for (raft::Message& m : rd.messages) {
      if (rd.SendableBeforePersist(m)) {
        Send(std::move(m));
      } else {
        after_sync.push_back(std::move(m));
      }
    }
    // 2. Persist before anything else leaves this node (votes and acks promise it).
    const Clock::time_point save_start = Clock::now();
    Status s = wal->Save(rd.hard_state, rd.entries, rd.snapshot, rd.MustSync());
    if (rd.MustSync()) {
      std::lock_guard<std::mutex> lock(metrics_mu);
      ++wal_syncs;
      wal_sync_seconds += std::chrono::duration<double>(Clock::now() - save_start).count();
    }
    if (!s.ok()) return s.WithContext("WAL write in " + opt.data_dir);
    for (raft::Message& m : after_sync) Send(std::move(m));
    // 3. Apply.
    if (rd.snapshot) {
      Status rs = kv.Restore(rd.snapshot->data);
      if (!rs.ok()) return rs.WithContext("snapshot from the leader at index " + std::to_string(rd.snapshot->meta.index));
    }
    for (const raft::Entry& e : rd.committed_entries) ApplyEntry(e);
    for (const raft::ReadState& rs : rd.read_states) {
      auto it = reads.find(rs.request_id);
      if (it != reads.end()) it->second.index = std::max<uint64_t>(rs.index, 1);
    }
    raft->Advance(rd);
    ServeReads();
    ServeWatchers(false);
    // 4. Compact.
    uint64_t applied = raft->applied();
    if (opt.snapshot_every > 0 && applied >= raft->snapshot_meta().index + opt.snapshot_every) {
      Result<raft::Snapshot> snap = raft->CreateSnapshot(applied, kv.Serialize());
      if (snap.ok()) {
        COHORT_RETURN_IF_ERROR(wal->SaveSnapshot(*snap).WithContext("snapshot in " + opt.data_dir));
        COHORT_LOG_INFO("node {}: snapshot at index {}", opt.id, applied);
      }
    }
  }
  bool leader = raft->role() == raft::Role::kLeader;
  if (was_leader && !leader) {
    COHORT_LOG_INFO("node {}: stepped down at term {}", opt.id, raft->term());
    FailPending("node " + std::to_string(opt.id) + " lost leadership; retry");
  }
  if (!was_leader && leader) COHORT_LOG_INFO("node {}: leader at term {}", opt.id, raft->term());
  was_leader = leader;
  is_leader.store(leader);
  if (tick) ServeWatchers(true);
  PublishView();
  return Status::Ok();
}

void Node::Impl::RaftLoop() {
  Clock::time_point next_tick = Clock::now() + opt.tick;
  uint64_t ticks = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_until(lock, next_tick, [&] {
        return stopping || !inbox_msgs.empty() || !inbox_requests.empty() || !inbox_reports.empty();
      });
      if (stopping) break;
    }
    Clock::time_point now = Clock::now();
    bool tick = now >= next_tick;
    if (tick) {
      next_tick += opt.tick;
      if (next_tick < now) next_tick = now + opt.tick;  // fell behind: do not burst ticks
      if (++ticks % 50 == 0) ExpireWaiters();
    }
    Status s = RunRound(tick);
    if (!s.ok()) {
      COHORT_LOG_ERROR("node {} stops: {}", opt.id, s.ToString());
      std::lock_guard<std::mutex> lock(mu);
      fatal = s;
      stopping = true;
      break;
    }
  }
  FailPending("node " + std::to_string(opt.id) + " is shutting down");
  for (auto& [id, r] : reads) r.waiter->Complete(Unavailable("node is shutting down"));
  reads.clear();
  for (auto& [id, r] : watchers) r.waiter->Complete(Unavailable("node is shutting down"));
  watchers.clear();
  std::deque<Request> left;
  {
    std::lock_guard<std::mutex> lock(mu);
    left.swap(inbox_requests);
    stopped = true;
    stopped_cv.notify_all();
  }
  for (Request& r : left) r.waiter->Complete(Unavailable("node is shutting down"));
}

// ---- Node ----------------------------------------------------------------------------

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() { Shutdown(); }

Result<std::unique_ptr<Node>> Node::Start(NodeOptions o) {
  if (o.peers.find(o.id) == o.peers.end()) {
    return InvalidArgument("--id " + std::to_string(o.id) + " is not one of the --peers");
  }
  if (o.token.empty()) return InvalidArgument("empty cluster token; give --token-file");
  if (o.data_dir.empty()) return InvalidArgument("--data-dir is required");
  if (o.tick.count() <= 0 || o.heartbeat < o.tick || o.election <= o.heartbeat) {
    return InvalidArgument("timing: need 0 < tick <= heartbeat < election (tick " + std::to_string(o.tick.count()) +
                           " ms, heartbeat " + std::to_string(o.heartbeat.count()) + " ms, election " +
                           std::to_string(o.election.count()) + " ms)");
  }
  if (o.listen_address.empty()) o.listen_address = o.peers.at(o.id);
  auto impl = std::make_unique<Impl>(std::move(o));
  NodeOptions& opt = impl->opt;

  // Recover (or bootstrap) the durable state.
  COHORT_RETURN_IF_ERROR(MakeDirs(opt.data_dir));
  impl->wal = std::make_unique<raft::Wal>(raft::PosixFileSystem(), raft::WalOptions{opt.data_dir});
  Result<raft::InitialState> loaded = impl->wal->Load();
  if (!loaded.ok()) {
    return loaded.status().WithContext("node " + std::to_string(opt.id) + " cannot recover its WAL in " +
                                       opt.data_dir + " (refusing to start; restore the directory from a healthy "
                                       "replica or remove it to rejoin as a new member)");
  }
  raft::InitialState init = std::move(loaded).value();
  bool fresh = init.hard_state == raft::HardState{} && init.snapshot.meta.index == 0 && init.entries.empty();
  if (fresh) {
    std::vector<NodeId> voters;
    for (const auto& [id, addr] : opt.peers) voters.push_back(id);
    init = raft::Bootstrap(voters);
    COHORT_RETURN_IF_ERROR(impl->wal->Save(init.hard_state, init.entries, std::nullopt, true)
                               .WithContext("bootstrap WAL in " + opt.data_dir));
    COHORT_LOG_INFO("node {}: new cluster of {} nodes in {}", opt.id, voters.size(), opt.data_dir);
  } else {
    if (!init.snapshot.data.empty()) {
      COHORT_RETURN_IF_ERROR(impl->kv.Restore(init.snapshot.data).WithContext("snapshot in " + opt.data_dir));
    }
    COHORT_LOG_INFO("node {}: recovered term {} commit {} snapshot {} entries {} (torn bytes truncated: {})", opt.id,
                    init.hard_state.term, init.hard_state.commit, init.snapshot.meta.index, init.entries.size(),
                    impl->wal->stats().torn_bytes_truncated);
  }
  raft::Config cfg;
  cfg.id = opt.id;
  cfg.heartbeat_tick = static_cast<int>(std::max<int64_t>(1, opt.heartbeat / opt.tick));
  cfg.election_tick = static_cast<int>(std::max<int64_t>(cfg.heartbeat_tick + 1, opt.election / opt.tick));
  cfg.seed = static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^ (opt.id * 0x9E3779B97F4A7C15ull);
  impl->raft = std::make_unique<raft::Raft>(cfg, std::move(init));
  impl->PublishView();

  // Credentials: TLS when the certificate files are given.
  std::shared_ptr<grpc::ServerCredentials> server_creds = grpc::InsecureServerCredentials();
  std::shared_ptr<grpc::ChannelCredentials> channel_creds = grpc::InsecureChannelCredentials();
  int tls_files = !opt.tls_cert_file.empty() + !opt.tls_key_file.empty() + !opt.tls_ca_file.empty();
  if (tls_files != 0) {
    if (tls_files != 3) return InvalidArgument("TLS needs all of --tls-cert, --tls-key and --tls-ca");
    COHORT_ASSIGN_OR_RETURN(std::string cert, ReadFile(opt.tls_cert_file));
    COHORT_ASSIGN_OR_RETURN(std::string key, ReadFile(opt.tls_key_file));
    COHORT_ASSIGN_OR_RETURN(std::string ca, ReadFile(opt.tls_ca_file));
    grpc::SslServerCredentialsOptions so(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    so.pem_root_certs = ca;
    so.pem_key_cert_pairs.push_back({key, cert});
    server_creds = grpc::SslServerCredentials(so);
    grpc::SslCredentialsOptions co;
    co.pem_root_certs = ca;
    channel_creds = grpc::SslCredentials(co);
  }

  // Transport.
  Impl* raw = impl.get();
  for (const auto& [id, addr] : opt.peers) {
    if (id == opt.id) continue;
    impl->senders[id] = std::make_unique<PeerSender>(id, addr, opt.token, channel_creds,
                                                     [raw](NodeId to, bool ok) { raw->ReportSnapshot(to, ok); });
  }
  // Server (before the Raft thread, so a port chosen by the system can be
  // written into peers before anything reads them).
  impl->raft_service = std::make_unique<RaftServiceImpl>(raw);
  impl->client_service = std::make_unique<CoordinatorServiceImpl>(raw);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(opt.listen_address, server_creds, &bound_port);
  builder.SetMaxReceiveMessageSize(limits::kMaxRpcBytes);
  builder.SetMaxSendMessageSize(limits::kMaxRpcBytes);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a second node on the same port must fail
  // Keep the handler threads: each client write holds one until it commits,
  // and with gRPC's default (2 idle threads at most) every request created
  // and destroyed a thread, which cost the leader more CPU than Raft did.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, limits::kMaxIdleServerThreads);
  // Accept the peers' keepalive pings (gRPC's default allows one per 5 min
  // without data and closes the connection after two more).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(limits::kPeerKeepalive.count() / 2));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<RpcCounterFactory>(raw));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(impl->raft_service.get());
  builder.RegisterService(impl->client_service.get());
  impl->server = builder.BuildAndStart();
  auto node = std::unique_ptr<Node>(new Node(std::move(impl)));
  if (!node->impl_->server || bound_port == 0) {
    node->Shutdown();
    return Unavailable("node " + std::to_string(node->impl_->opt.id) + " cannot listen on " +
                       node->impl_->opt.listen_address + " (address in use or invalid)");
  }
  // Port 0 (a single-node group): advertise the port the system chose. Nobody
  // knows that port yet, so no handler reads peers meanwhile.
  std::string& self = opt.peers[opt.id];
  if (self.size() >= 2 && self.compare(self.size() - 2, 2, ":0") == 0) {
    self = self.substr(0, self.size() - 1) + std::to_string(bound_port);
  }
  node->impl_->bound_address = opt.listen_address.substr(0, opt.listen_address.rfind(':') + 1) +
                               std::to_string(bound_port);
  node->impl_->raft_thread = std::thread([raw] { raw->RaftLoop(); });
  {
    JobControllerOptions jo;
    jo.endpoint = opt.peers.at(opt.id);
    jo.token = opt.token;
    if (!opt.tls_ca_file.empty()) {
      COHORT_ASSIGN_OR_RETURN(jo.tls_ca_pem, ReadFile(opt.tls_ca_file));
    }
    jo.is_leader = [raw] { return raw->is_leader.load(); };
    node->impl_->controller = std::make_unique<JobController>(std::move(jo));
  }
  COHORT_LOG_INFO("node {}: serving on {} ({})", node->impl_->opt.id, node->impl_->opt.listen_address,
                  tls_files ? "TLS" : "plaintext");
  return node;
}

void Node::Shutdown() {
  std::lock_guard<std::mutex> guard(impl_->shutdown_mu);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  if (impl_->controller) impl_->controller->Stop();
  // The Raft thread first: it answers every waiting client (UNAVAILABLE), so
  // the server's handlers return and its shutdown does not wait on them.
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  if (impl_->raft_thread.joinable()) impl_->raft_thread.join();
  if (impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    impl_->server->Wait();
  }
  for (auto& [id, s] : impl_->senders) s->Stop();
}

const std::string& Node::address() const { return impl_->bound_address; }

NodeMetrics Node::Metrics() const {
  NodeMetrics m;
  {
    std::lock_guard<std::mutex> lock(impl_->view_mu);
    const StatusView& v = impl_->view;
    m.role = v.role;
    m.leader = v.leader;
    m.term = v.term;
    m.commit_index = v.commit;
    m.applied_index = v.applied;
    m.last_index = v.last;
    m.snapshot_index = v.snapshot;
    m.epoch = v.job.epoch();
    for (const pb::MemberInfo& mi : v.job.members()) ++m.members_by_state[MemberStateName(static_cast<MemberState>(mi.state()))];
  }
  std::lock_guard<std::mutex> lock(impl_->metrics_mu);
  m.rpcs = impl_->rpcs;
  m.wal_syncs = impl_->wal_syncs;
  m.wal_sync_seconds = impl_->wal_sync_seconds;
  if (impl_->controller) m.breakers = impl_->controller->Breakers();
  return m;
}

Status Node::Wait() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->stopped_cv.wait(lock, [&] { return impl_->stopped; });
  return impl_->fatal;
}

}  // namespace cohort::coordinator
