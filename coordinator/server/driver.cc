// The node's driver (coordinator/server/node.h, "Threads"): the Raft thread,
// which alone owns the Raft core, the WAL and the state machine, and the
// inbox through which gRPC threads hand it messages, snapshot reports and
// client requests and wait for the answers.
#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/client/rpc_metadata.h"
#include "coordinator/server/convert.h"
#include "coordinator/server/node_impl.h"
#include "coordinator/server/rpc_common.h"
#include "core/logging.h"

namespace cohort::coordinator {

using raft::NodeId;

// ---- The inbox: called from gRPC threads ------------------------------------------

void Node::Impl::Deliver(std::vector<raft::Message> msgs) {
  std::lock_guard<std::mutex> lock(mu);
  for (raft::Message& m : msgs) {
    if (inbox_msgs.size() >= limits::kMaxInboxMessages) break;  // dropped: Raft retransmits
    inbox_msgs.push_back(std::move(m));
  }
  cv.notify_one();
}

void Node::Impl::ReportSnapshot(NodeId to, bool ok) {
  std::lock_guard<std::mutex> lock(mu);
  inbox_reports.emplace_back(to, ok);
  cv.notify_one();
}

Status Node::Impl::Submit(Request req, grpc::ServerContext* ctx, std::shared_ptr<Waiter>* out) {
  // The client's own deadline, when earlier.
  Clock::duration wait = limits::kMaxRequestWait + req.watch;
  Clock::time_point deadline = Clock::now() + wait;
  auto client_left = ctx->deadline() - std::chrono::system_clock::now();
  if (client_left < wait) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::max(
                                  client_left, std::chrono::system_clock::duration::zero()));
  }
  auto w = std::make_shared<Waiter>();
  w->deadline = deadline;
  req.waiter = w;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) return Unavailable("node " + std::to_string(opt.id) + " is shutting down");
    if (inbox_requests.size() >= limits::kMaxPendingRequests) {
      return Unavailable("node " + std::to_string(opt.id) + " has " +
                         std::to_string(limits::kMaxPendingRequests) +
                         " requests queued; retry later");
    }
    inbox_requests.push_back(std::move(req));
    cv.notify_one();
  }
  *out = w;
  std::unique_lock<std::mutex> lock(w->mu);
  if (!w->cv.wait_until(lock, deadline, [&] { return w->done; })) {
    return DeadlineExceeded(
        "node " + std::to_string(opt.id) +
        ": no answer within the deadline; retry (a write keeps its sequence number)");
  }
  return w->status;
}

grpc::Status Node::Impl::Answer(const Status& s, NodeId leader, grpc::ServerContext* ctx) {
  if (s.ok()) return grpc::Status::OK;
  if (leader != 0) {
    ctx->AddTrailingMetadata(kLeaderIdMetadata, std::to_string(leader));
    auto it = opt.peers.find(leader);
    if (it != opt.peers.end()) ctx->AddTrailingMetadata(kLeaderAddressMetadata, it->second);
  }
  if (s.detail() != 0) ctx->AddTrailingMetadata(kRefusalMetadata, std::to_string(s.detail()));
  return grpc::Status(ToGrpcCode(s.code()), s.message());
}

StatusView Node::Impl::View() {
  std::lock_guard<std::mutex> lock(view_mu);
  return view;
}

// ---- The Raft thread ----------------------------------------------------------------

Status Node::Impl::NotLeader() const {
  NodeId lead = raft->leader();
  if (lead == raft::kNoNode || lead == opt.id) {
    return Unavailable("node " + std::to_string(opt.id) +
                       " knows no leader (election in progress); retry");
  }
  auto it = opt.peers.find(lead);
  return FailedPrecondition("node " + std::to_string(opt.id) +
                            " is not the leader; the leader is node " + std::to_string(lead) +
                            (it != opt.peers.end() ? " at " + it->second : std::string()));
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
    r.waiter->Complete(Unavailable(std::to_string(limits::kMaxWatchers) +
                                   " watches are open on node " + std::to_string(opt.id) +
                                   "; retry later"));
    return;
  }
  if (reads.size() >= limits::kMaxPendingRequests) {
    r.waiter->Complete(
        Unavailable("too many reads pending on node " + std::to_string(opt.id) + "; retry"));
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
  KvResult result;
  bool is_command = e.type == raft::EntryType::kNormal && !e.data.empty();
  bool decoded = false;
  if (is_command) {
    Result<KvCommand> cmd = KvCommand::Decode(e.data);
    if (cmd.ok()) {
      result = kv.Apply(e.index, *cmd);
      decoded = true;
      if (cmd->op == KvCommand::Op::kLeaseExpire) expiring.erase(cmd->lease);
    } else {
      // Every replica skips the same entry, so they stay identical.
      COHORT_LOG_ERROR("log index {}: not a key-value command ({}); skipped", e.index,
                       cmd.status().ToString());
    }
  }
  // Proposals at or below this index are decided now.
  while (!proposals.empty() && proposals.begin()->first <= e.index) {
    auto it = proposals.begin();
    if (it->first == e.index && it->second.term == e.term && decoded) {
      if (result.stale) {
        it->second.waiter->Complete(
            Aborted("sequence number older than this client's last write; not applied"));
      } else if (result.code != StatusCode::kOk) {
        it->second.waiter->Complete(
            Status(result.code, result.error,
                   static_cast<int>(result.refusal)));  // no leader hint: not a redirect
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
      pr.waiter->Complete(Unavailable(std::to_string(limits::kMaxWatchers) +
                                      " watches are open on node " + std::to_string(opt.id) +
                                      "; retry later"));
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
    KvCommand c;
    c.op = KvCommand::Op::kLeaseExpire;
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

// One Ready, in the order that keeps Raft's promises: send what may leave
// before the fsync, persist, send the rest, apply, serve reads, compact.
Status Node::Impl::ProcessReady(raft::Ready& rd) {
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
    if (!rs.ok())
      return rs.WithContext("snapshot from the leader at index " +
                            std::to_string(rd.snapshot->meta.index));
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
  return Status::Ok();
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
    COHORT_RETURN_IF_ERROR(ProcessReady(rd));
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

}  // namespace cohort::coordinator
