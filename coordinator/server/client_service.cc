// The node's client API (proto/coordinator.proto, service Coordinator): each
// RPC is token-checked and validated against the limits here, then queued for
// the Raft thread as a proposal (writes, answered once applied) or a
// linearizable query (reads and watches, answered once the read index is
// applied); see coordinator/server/node.h. Status answers from the last
// published view without Raft.
#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/raft/limits.h"
#include "coordinator/server/convert.h"
#include "coordinator/server/node_impl.h"
#include "coordinator/server/rpc_common.h"

namespace cohort::coordinator {
namespace {

Status CheckKey(const std::string& key) {
  if (key.empty()) return InvalidArgument("empty key");
  if (key.size() > raft::limits::kMaxKeyBytes) {
    return InvalidArgument("key of " + std::to_string(key.size()) + " bytes; at most " +
                           std::to_string(raft::limits::kMaxKeyBytes));
  }
  return Status::Ok();
}

Status CheckWrite(const std::string& key, const std::string& value, uint64_t client_id,
                  uint64_t seq) {
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
    return InvalidArgument(std::string(what) + " of " + std::to_string(s.size()) +
                           " bytes; at most " + std::to_string(raft::limits::kMaxKeyBytes));
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

  grpc::Status Put(grpc::ServerContext* ctx, const pb::PutRequest* req,
                   pb::PutResponse* resp) override {
    KvCommand cmd = Cmd(KvCommand::Op::kPut, req->client_id(), req->seq());
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

  grpc::Status Cas(grpc::ServerContext* ctx, const pb::CasRequest* req,
                   pb::CasResponse* resp) override {
    KvCommand cmd = Cmd(KvCommand::Op::kCas, req->client_id(), req->seq());
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

  grpc::Status Delete(grpc::ServerContext* ctx, const pb::DeleteRequest* req,
                      pb::DeleteResponse* resp) override {
    KvCommand cmd = Cmd(KvCommand::Op::kDelete, req->client_id(), req->seq());
    cmd.key = req->key();
    return Write(ctx, CheckWrite(req->key(), "", req->client_id(), req->seq()), cmd,
                 [&](const Waiter& w) {
                   resp->set_deleted(w.result.ok);
                   resp->set_revision(w.result.revision);
                 });
  }

  grpc::Status Add(grpc::ServerContext* ctx, const pb::AddRequest* req,
                   pb::AddResponse* resp) override {
    KvCommand cmd = Cmd(KvCommand::Op::kAdd, req->client_id(), req->seq());
    cmd.key = req->key();
    cmd.value = std::to_string(req->delta());
    cmd.lease = req->lease();
    return Write(ctx, CheckWrite(req->key(), "", req->client_id(), req->seq()), cmd,
                 [&](const Waiter& w) {
                   resp->set_value(w.result.number);
                   resp->set_revision(w.result.revision);
                 });
  }

  grpc::Status Member(grpc::ServerContext* ctx, const pb::MemberRequest* req,
                      pb::JobWriteResponse* resp) override {
    KvCommand::Op op = KvCommand::Op::kJoin;
    switch (req->op()) {
      case pb::MEMBER_JOIN:
        op = KvCommand::Op::kJoin;
        break;
      case pb::MEMBER_LEAVE:
        op = KvCommand::Op::kLeave;
        break;
      case pb::MEMBER_HEARTBEAT:
        op = KvCommand::Op::kHeartbeat;
        break;
      case pb::MEMBER_FAIL:
        op = KvCommand::Op::kFail;
        break;
      default:
        return n_->Answer(InvalidArgument("unknown member operation"), 0, ctx);
    }
    KvCommand cmd = Cmd(op, req->client_id(), req->seq());
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
    KvCommand cmd = Cmd(KvCommand::Op::kCommitEpoch, req->client_id(), req->seq());
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
    KvCommand cmd =
        Cmd(req->commit() ? KvCommand::Op::kCommitCheckpoint : KvCommand::Op::kProposeCheckpoint,
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

  grpc::Status Lease(grpc::ServerContext* ctx, const pb::LeaseRequest* req,
                     pb::LeaseResponse* resp) override {
    KvCommand::Op op = KvCommand::Op::kLeaseGrant;
    switch (req->op()) {
      case pb::LEASE_GRANT:
        op = KvCommand::Op::kLeaseGrant;
        break;
      case pb::LEASE_KEEPALIVE:
        op = KvCommand::Op::kLeaseKeepalive;
        break;
      case pb::LEASE_REVOKE:
        op = KvCommand::Op::kLeaseRevoke;
        break;
      default:
        return n_->Answer(InvalidArgument("unknown lease operation"), 0, ctx);
    }
    KvCommand cmd = Cmd(op, req->client_id(), req->seq());
    cmd.lease = req->lease();
    cmd.ttl_ms = req->ttl_ms();
    return Write(ctx, CheckSession(req->client_id(), req->seq()), cmd, [&](const Waiter& w) {
      resp->set_lease(w.result.id);
      resp->set_ttl_ms(req->ttl_ms());
    });
  }

  grpc::Status Get(grpc::ServerContext* ctx, const pb::GetRequest* req,
                   pb::GetResponse* resp) override {
    std::string key = req->key();
    return Read(
        ctx, CheckKey(key), Clock::duration::zero(),
        [key](const KvStateMachine& kv, uint64_t read_index, bool) -> std::optional<std::string> {
          pb::GetResponse r;
          const KvEntry* e = kv.Find(key);
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

  grpc::Status GetJob(grpc::ServerContext* ctx, const pb::JobRequest*,
                      pb::JobResponse* resp) override {
    return Read(
        ctx, cohort::Status::Ok(), Clock::duration::zero(),
        [](const KvStateMachine& kv, uint64_t read_index, bool) -> std::optional<std::string> {
          pb::JobResponse r;
          FillJob(kv, &r);
          r.set_read_index(read_index);
          return r.SerializeAsString();
        },
        resp);
  }

  grpc::Status Watch(grpc::ServerContext* ctx, const pb::WatchRequest* req,
                     pb::WatchResponse* resp) override {
    std::string key = req->key();
    bool prefix = req->prefix();
    uint64_t after = req->after_revision();
    cohort::Status v =
        prefix && key.size() <= raft::limits::kMaxKeyBytes ? cohort::Status::Ok() : CheckKey(key);
    auto wait = std::chrono::milliseconds(
        std::min<uint64_t>(req->timeout_ms(), limits::kMaxWatchWait.count()));
    return Read(
        ctx, v, wait,
        [key, prefix, after](const KvStateMachine& kv, uint64_t,
                             bool final) -> std::optional<std::string> {
          bool more = false;
          std::vector<KvEvent> ev = kv.Changes(key, prefix, after, limits::kMaxWatchEvents, &more);
          if (ev.empty() && !final) return std::nullopt;
          pb::WatchResponse r;
          for (KvEvent& e : ev) {
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

  grpc::Status Status(grpc::ServerContext* ctx, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override {
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
  static KvCommand Cmd(KvCommand::Op op, uint64_t client_id, uint64_t seq) {
    KvCommand c;
    c.op = op;
    c.client_id = client_id;
    c.seq = seq;
    return c;
  }
  // Checks the token and `valid`, proposes `cmd`, and on success lets `fill`
  // read the waiter (final once done).
  grpc::Status Write(grpc::ServerContext* ctx, const cohort::Status& valid, KvCommand cmd,
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
  grpc::Status Read(grpc::ServerContext* ctx, const cohort::Status& valid, Clock::duration watch,
                    Query query, google::protobuf::Message* resp) {
    if (!TokenOk(ctx, n_->opt.token)) return PermissionDenied();
    if (!valid.ok()) return n_->Answer(valid, 0, ctx);
    Request r;
    r.kind = Request::Kind::kRead;
    r.query = std::move(query);
    r.watch = watch;
    std::shared_ptr<Waiter> w;
    cohort::Status s = n_->Submit(std::move(r), ctx, &w);
    if (!s.ok()) return n_->Answer(s, w ? w->LeaderHint() : 0, ctx);
    if (!resp->ParseFromString(w->payload))
      return grpc::Status(grpc::StatusCode::INTERNAL, "bad query answer");
    return grpc::Status::OK;
  }
  Node::Impl* n_;
};

}  // namespace

std::unique_ptr<pb::Coordinator::Service> NewClientService(Node::Impl* n) {
  return std::make_unique<CoordinatorServiceImpl>(n);
}

}  // namespace cohort::coordinator
