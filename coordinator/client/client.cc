#include "coordinator/client/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <random>
#include <thread>

#include "coordinator/client/rpc_metadata.h"
#include "coordinator/health/failure_detector.h"
#include "proto/coordinator.grpc.pb.h"

namespace cohort::coordinator {

namespace pb = ::cohort::coordinator::v1;
using Clock = std::chrono::steady_clock;

namespace {

StatusCode FromGrpc(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return StatusCode::kOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return StatusCode::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return StatusCode::kNotFound;
    case grpc::StatusCode::DATA_LOSS:
      return StatusCode::kDataLoss;
    case grpc::StatusCode::UNAVAILABLE:
      return StatusCode::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::ABORTED:
      return StatusCode::kAborted;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return StatusCode::kFailedPrecondition;
    case grpc::StatusCode::UNIMPLEMENTED:
      return StatusCode::kUnimplemented;
    case grpc::StatusCode::PERMISSION_DENIED:
      return StatusCode::kPermissionDenied;
    case grpc::StatusCode::UNAUTHENTICATED:
      return StatusCode::kPermissionDenied;
    default:
      return StatusCode::kInternal;
  }
}

CheckpointInfo CheckpointFromProto(const pb::CheckpointInfo& c) {
  return CheckpointInfo{c.epoch(), c.step(), c.path(), c.checksum()};
}

static_assert(static_cast<int>(MemberState::kJoining) == pb::MEMBER_JOINING &&
              static_cast<int>(MemberState::kActive) == pb::MEMBER_ACTIVE &&
              static_cast<int>(MemberState::kFailed) == pb::MEMBER_FAILED &&
              static_cast<int>(MemberState::kLeft) == pb::MEMBER_LEFT);

JobInfo JobFromProto(const pb::JobResponse& j) {
  JobInfo out;
  out.epoch = j.epoch();
  for (const pb::MemberInfo& m : j.members()) {
    out.members.push_back(MemberInfo{m.id(), m.address(), static_cast<MemberState>(m.state()),
                                     m.last_heartbeat_ms(), m.rank()});
  }
  out.ranks.assign(j.ranks().begin(), j.ranks().end());
  if (j.has_checkpoint()) out.last_checkpoint = CheckpointFromProto(j.last_checkpoint());
  for (const pb::CheckpointInfo& c : j.pending()) out.pending.push_back(CheckpointFromProto(c));
  out.revision = j.revision();
  return out;
}

std::string Metadata(const grpc::ClientContext& ctx, const char* key) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// The state machine's refusal named in the trailing metadata (kRefusalMetadata), as
// Status::detail(): 0 when absent or not a Refusal.
int RefusalDetail(const grpc::ClientContext& ctx) {
  const std::string text = Metadata(ctx, kRefusalMetadata);
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v <= 0 || v > kMaxRefusal) return 0;
  return v;
}

}  // namespace

struct Client::Impl {
  struct Endpoint {
    std::unique_ptr<pb::Coordinator::Stub> stub;
    health::CircuitBreaker breaker;
  };

  ClientOptions opt;
  std::map<std::string, Endpoint> endpoints;  // at most limits::kMaxEndpoints
  std::vector<std::string> order;             // round-robin order
  size_t next = 0;
  std::string leader;  // address believed to lead; empty: unknown
  uint64_t seq = 0;
  std::mt19937_64 rng{std::random_device{}()};

  Endpoint& Get(const std::string& addr) {
    auto it = endpoints.find(addr);
    if (it != endpoints.end()) return it->second;
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(limits::kPeerReconnectMin.count()));
    // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC takes it as the minimum
    // connect timeout, and 50 ms cut TLS handshakes short on a loaded machine.
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(limits::kPeerReconnectMax.count()));
    args.SetMaxReceiveMessageSize(limits::kMaxRpcBytes);
    health::CircuitBreaker::Options bo;
    bo.failure_threshold = 3;
    bo.phi_threshold = 1e300;  // calls are sparse: judge by failures only
    bo.cooldown = std::chrono::milliseconds(500);
    bo.max_cooldown = std::chrono::milliseconds(5000);
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!opt.tls_ca_pem.empty()) {
      grpc::SslCredentialsOptions so;
      so.pem_root_certs = opt.tls_ca_pem;
      creds = grpc::SslCredentials(so);
    }
    Endpoint e{pb::Coordinator::NewStub(grpc::CreateCustomChannel(addr, creds, args)),
               health::CircuitBreaker(bo)};
    return endpoints.emplace(addr, std::move(e)).first->second;
  }

  Status Lease(pb::LeaseOp op, uint64_t lease, uint64_t ttl_ms, uint64_t* granted);
  Status Member(pb::MemberOp op, const std::string& member, const std::string& address,
                uint64_t epoch);

  // The leader when known and its breaker lets it through; else the next
  // endpoint whose breaker is not open; else the next one regardless.
  std::string Pick() {
    Clock::time_point now = Clock::now();
    if (!leader.empty() && Get(leader).breaker.Update(now) != health::BreakerState::kOpen)
      return leader;
    for (size_t i = 0; i < order.size(); ++i) {
      const std::string& a = order[(next + i) % order.size()];
      if (Get(a).breaker.Update(now) != health::BreakerState::kOpen) {
        next = (next + i + 1) % order.size();
        return a;
      }
    }
    const std::string& a = order[next];
    next = (next + 1) % order.size();
    return a;
  }

  // A checkpoint propose or commit (req holds its own fields), fenced by epoch.
  Status CheckpointWrite(uint64_t epoch, uint64_t step, pb::CheckpointRequest& req,
                         const char* what) {
    req.set_epoch(epoch);
    req.set_step(step);
    req.set_client_id(opt.client_id);
    req.set_seq(++seq);
    pb::JobWriteResponse resp;
    return Call(what + std::to_string(step),
                [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
                  return stub->Checkpoint(ctx, req, &resp);
                });
  }

  // Runs `fn(stub, ctx)` until it succeeds, fails for good, or the deadline passes.
  // `extra`: added to the deadline and to every attempt (a watch's wait).
  template <typename Fn>
  Status Call(const std::string& what, Fn fn, Clock::duration extra = Clock::duration::zero()) {
    Clock::time_point deadline = Clock::now() + opt.deadline + extra;
    auto backoff = limits::kClientBackoffInitial;
    int redirects = 0;
    std::string last_error = "no attempt made";
    for (int attempt = 0; attempt < limits::kClientMaxAttempts; ++attempt) {
      Clock::time_point now = Clock::now();
      if (now >= deadline) break;
      std::string addr = Pick();
      Endpoint& ep = Get(addr);
      grpc::ClientContext ctx;
      ctx.AddMetadata(kTokenMetadata, opt.token);
      ctx.set_deadline(std::chrono::system_clock::now() +
                       (std::min(deadline, now + opt.attempt_timeout + extra) - now));
      grpc::Status s = fn(ep.stub.get(), &ctx);
      now = Clock::now();
      if (s.ok()) {
        ep.breaker.OnSuccess(now);
        leader = addr;
        return Status::Ok();
      }
      last_error = addr + ": " + s.error_message();
      StatusCode code = FromGrpc(s.error_code());
      std::string hint = Metadata(ctx, kLeaderAddressMetadata);
      bool answered = !Metadata(ctx, kLeaderIdMetadata).empty() ||
                      code == StatusCode::kFailedPrecondition ||
                      code == StatusCode::kPermissionDenied || code == StatusCode::kInvalidArgument;
      if (answered) {
        ep.breaker.OnSuccess(now);
      } else {
        ep.breaker.OnFailure(now);
      }
      // FAILED_PRECONDITION without a leader named is the state machine's
      // answer (a stale epoch, a checkpoint rule), not a redirect.
      if (code == StatusCode::kFailedPrecondition && Metadata(ctx, kLeaderIdMetadata).empty()) {
        return Status(code, what + " at " + last_error, RefusalDetail(ctx));
      }
      switch (code) {
        case StatusCode::kPermissionDenied:
        case StatusCode::kInvalidArgument:
        case StatusCode::kAborted:
        case StatusCode::kNotFound:
        case StatusCode::kUnimplemented:
        case StatusCode::kDataLoss:
          return Status(code, what + " at " + last_error, RefusalDetail(ctx));
        default:
          break;
      }
      if (!hint.empty() && hint != addr && redirects < limits::kClientMaxRedirects &&
          (endpoints.count(hint) > 0 || endpoints.size() < limits::kMaxEndpoints)) {
        leader = hint;  // follow the redirect at once
        ++redirects;
        continue;
      }
      leader.clear();
      redirects = 0;
      // Exponential backoff with jitter in [backoff/2, backoff].
      auto half = backoff.count() / 2;
      auto sleep = std::chrono::milliseconds(
          half + static_cast<int64_t>(rng() % static_cast<uint64_t>(half + 1)));
      if (Clock::now() + sleep >= deadline) break;
      std::this_thread::sleep_for(sleep);
      backoff = std::min(backoff * 2, limits::kClientBackoffMax);
    }
    return DeadlineExceeded(what + " did not succeed within " +
                            std::to_string(opt.deadline.count()) +
                            " ms; last error: " + last_error);
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.endpoints.empty()) return InvalidArgument("no coordinator endpoints given");
  if (options.endpoints.size() > limits::kMaxEndpoints) {
    return InvalidArgument("too many coordinator endpoints (at most " +
                           std::to_string(limits::kMaxEndpoints) + ")");
  }
  if (options.token.empty()) return InvalidArgument("empty cluster token; give --token-file");
  auto impl = std::make_unique<Impl>();
  if (options.client_id == 0) {
    while (options.client_id == 0) options.client_id = impl->rng();
  }
  impl->opt = std::move(options);
  impl->order = impl->opt.endpoints;
  for (const std::string& a : impl->order) impl->Get(a);
  impl->next = static_cast<size_t>(impl->rng() % impl->order.size());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

uint64_t Client::client_id() const { return impl_->opt.client_id; }

Result<PutResult> Client::Put(const std::string& key, const std::string& value, uint64_t lease) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);  // the same number on every retry
  pb::PutResponse resp;
  COHORT_RETURN_IF_ERROR(
      impl_->Call("put '" + key + "'", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
        return stub->Put(ctx, req, &resp);
      }));
  PutResult out;
  if (resp.has_previous()) out.previous = resp.previous();
  out.index = resp.index();
  out.revision = resp.revision();
  return out;
}

Result<CasResult> Client::Cas(const std::string& key, const std::optional<std::string>& expected,
                              const std::string& value, uint64_t lease) {
  pb::CasRequest req;
  req.set_lease(lease);
  req.set_key(key);
  if (expected) req.set_expected(*expected);
  req.set_value(value);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);
  pb::CasResponse resp;
  COHORT_RETURN_IF_ERROR(
      impl_->Call("cas '" + key + "'", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
        return stub->Cas(ctx, req, &resp);
      }));
  CasResult out;
  out.swapped = resp.swapped();
  if (resp.has_previous()) out.previous = resp.previous();
  out.index = resp.index();
  out.revision = resp.revision();
  return out;
}

Result<std::optional<std::string>> Client::Get(const std::string& key) {
  pb::GetRequest req;
  req.set_key(key);
  pb::GetResponse resp;
  COHORT_RETURN_IF_ERROR(
      impl_->Call("get '" + key + "'", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
        return stub->Get(ctx, req, &resp);
      }));
  if (!resp.found()) return std::optional<std::string>();
  return std::optional<std::string>(resp.value());
}

Result<NodeStatus> Client::StatusOf(const std::string& endpoint) {
  if (impl_->endpoints.count(endpoint) == 0 && impl_->endpoints.size() >= limits::kMaxEndpoints) {
    return InvalidArgument("too many coordinator endpoints");
  }
  Impl::Endpoint& ep = impl_->Get(endpoint);
  grpc::ClientContext ctx;
  ctx.AddMetadata(kTokenMetadata, impl_->opt.token);
  ctx.set_deadline(std::chrono::system_clock::now() + impl_->opt.attempt_timeout);
  pb::StatusRequest req;
  pb::StatusResponse resp;
  grpc::Status s = ep.stub->Status(&ctx, req, &resp);
  if (!s.ok()) return Status(FromGrpc(s.error_code()), endpoint + ": " + s.error_message());
  NodeStatus out;
  out.node_id = resp.node_id();
  out.role = resp.role();
  out.leader_id = resp.leader_id();
  out.leader_address = resp.leader_address();
  out.term = resp.term();
  out.commit_index = resp.commit_index();
  out.applied_index = resp.applied_index();
  out.last_index = resp.last_index();
  out.snapshot_index = resp.snapshot_index();
  out.epoch = resp.epoch();
  for (const pb::NodeInfo& n : resp.nodes()) out.nodes.emplace_back(n.id(), n.address());
  out.job = JobFromProto(resp.job());
  return out;
}

Result<bool> Client::Delete(const std::string& key) {
  pb::DeleteRequest req;
  req.set_key(key);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);
  pb::DeleteResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call("delete '" + key + "'",
                                     [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
                                       return stub->Delete(ctx, req, &resp);
                                     }));
  return resp.deleted();
}

Result<int64_t> Client::Add(const std::string& key, int64_t delta, uint64_t lease) {
  pb::AddRequest req;
  req.set_key(key);
  req.set_delta(delta);
  req.set_lease(lease);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);
  pb::AddResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call("add to '" + key + "'",
                                     [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
                                       return stub->Add(ctx, req, &resp);
                                     }));
  return resp.value();
}

Result<WatchResult> Client::Watch(const std::string& key, bool prefix, uint64_t after_revision,
                                  std::chrono::milliseconds timeout) {
  timeout = std::clamp(timeout, std::chrono::milliseconds(0), limits::kMaxWatchWait);
  Clock::time_point until = Clock::now() + timeout;
  pb::WatchRequest req;
  req.set_key(key);
  req.set_prefix(prefix);
  req.set_after_revision(after_revision);
  pb::WatchResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call(
      "watch '" + key + "'",
      [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
        // A retry (after a leader change) waits only for what is left.
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        req.set_timeout_ms(static_cast<uint64_t>(std::max<int64_t>(0, left.count())));
        return stub->Watch(ctx, req, &resp);
      },
      timeout));
  WatchResult out;
  out.revision = resp.revision();
  out.more = resp.more();
  for (const pb::WatchEvent& e : resp.events()) {
    out.events.push_back(WatchEvent{e.key(), e.deleted(), e.value(), e.mod_revision()});
  }
  return out;
}

Status Client::Impl::Lease(pb::LeaseOp op, uint64_t lease, uint64_t ttl_ms, uint64_t* granted) {
  pb::LeaseRequest req;
  req.set_op(op);
  req.set_lease(lease);
  req.set_ttl_ms(ttl_ms);
  req.set_client_id(opt.client_id);
  req.set_seq(++seq);
  pb::LeaseResponse resp;
  COHORT_RETURN_IF_ERROR(Call("lease " + std::to_string(lease),
                              [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
                                return stub->Lease(ctx, req, &resp);
                              }));
  if (granted) *granted = resp.lease();
  return Status::Ok();
}

Result<uint64_t> Client::GrantLease(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) return InvalidArgument("lease TTL must be positive");
  uint64_t id = 0;
  COHORT_RETURN_IF_ERROR(impl_->Lease(pb::LEASE_GRANT, 0, static_cast<uint64_t>(ttl.count()), &id));
  return id;
}
Status Client::KeepAlive(uint64_t lease) {
  return impl_->Lease(pb::LEASE_KEEPALIVE, lease, 0, nullptr);
}
Status Client::RevokeLease(uint64_t lease) {
  return impl_->Lease(pb::LEASE_REVOKE, lease, 0, nullptr);
}

Status Client::Impl::Member(pb::MemberOp op, const std::string& member, const std::string& address,
                            uint64_t epoch) {
  pb::MemberRequest req;
  req.set_op(op);
  req.set_member(member);
  req.set_address(address);
  req.set_epoch(epoch);
  req.set_client_id(opt.client_id);
  req.set_seq(++seq);
  pb::JobWriteResponse resp;
  return Call("member '" + member + "' " + pb::MemberOp_Name(op),
              [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
                return stub->Member(ctx, req, &resp);
              });
}

Status Client::Join(const std::string& member, const std::string& address, uint64_t epoch) {
  return impl_->Member(pb::MEMBER_JOIN, member, address, epoch);
}
Status Client::Leave(const std::string& member, uint64_t epoch) {
  return impl_->Member(pb::MEMBER_LEAVE, member, "", epoch);
}
Status Client::Heartbeat(const std::string& member, uint64_t epoch) {
  return impl_->Member(pb::MEMBER_HEARTBEAT, member, "", epoch);
}
Status Client::MarkFailed(const std::string& member, uint64_t epoch) {
  return impl_->Member(pb::MEMBER_FAIL, member, "", epoch);
}

Result<uint64_t> Client::CommitEpoch(uint64_t epoch, const std::vector<std::string>& members) {
  pb::CommitEpochRequest req;
  req.set_epoch(epoch);
  for (const std::string& m : members) req.add_members(m);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);
  pb::JobWriteResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call("commit epoch " + std::to_string(epoch + 1),
                                     [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
                                       return stub->CommitEpoch(ctx, req, &resp);
                                     }));
  return resp.epoch();
}

Status Client::ProposeCheckpoint(uint64_t epoch, uint64_t step, const std::string& path,
                                 const std::string& checksum) {
  pb::CheckpointRequest req;
  req.set_commit(false);
  req.set_path(path);
  req.set_checksum(checksum);
  return impl_->CheckpointWrite(epoch, step, req, "propose checkpoint at step ");
}

Status Client::CommitCheckpoint(uint64_t epoch, uint64_t step) {
  pb::CheckpointRequest req;
  req.set_commit(true);
  return impl_->CheckpointWrite(epoch, step, req, "commit checkpoint at step ");
}

Result<JobInfo> Client::GetJob() {
  pb::JobRequest req;
  pb::JobResponse resp;
  COHORT_RETURN_IF_ERROR(
      impl_->Call("get job", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
        return stub->GetJob(ctx, req, &resp);
      }));
  return JobFromProto(resp);
}

}  // namespace cohort::coordinator
