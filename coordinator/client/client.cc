#include "coordinator/client/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "coordinator/health/failure_detector.h"
#include "coordinator/server/node.h"  // metadata names only
#include "proto/coordinator.grpc.pb.h"

namespace cohort::coordinator {

namespace pb = ::cohort::coordinator::v1;
using Clock = std::chrono::steady_clock;

Result<std::vector<std::string>> ParseEndpoints(const std::string& spec) {
  std::vector<std::string> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.find(':') == std::string::npos) {
      return InvalidArgument("--coordinator: '" + item + "' is not HOST:PORT");
    }
    out.push_back(item);
  }
  if (out.empty()) return InvalidArgument("--coordinator: no endpoint given (expected HOST:PORT,HOST:PORT,...)");
  if (out.size() > limits::kMaxEndpoints) {
    return InvalidArgument("--coordinator: " + std::to_string(out.size()) + " endpoints; at most " +
                           std::to_string(limits::kMaxEndpoints));
  }
  return out;
}

namespace {

StatusCode FromGrpc(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return StatusCode::kOk;
    case grpc::StatusCode::INVALID_ARGUMENT: return StatusCode::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND: return StatusCode::kNotFound;
    case grpc::StatusCode::DATA_LOSS: return StatusCode::kDataLoss;
    case grpc::StatusCode::UNAVAILABLE: return StatusCode::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::ABORTED: return StatusCode::kAborted;
    case grpc::StatusCode::FAILED_PRECONDITION: return StatusCode::kFailedPrecondition;
    case grpc::StatusCode::UNIMPLEMENTED: return StatusCode::kUnimplemented;
    case grpc::StatusCode::PERMISSION_DENIED: return StatusCode::kPermissionDenied;
    case grpc::StatusCode::UNAUTHENTICATED: return StatusCode::kPermissionDenied;
    default: return StatusCode::kInternal;
  }
}

std::string Metadata(const grpc::ClientContext& ctx, const char* key) {
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
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
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(limits::kPeerReconnectMin.count()));
    // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC takes it as the minimum
    // connect timeout, and 50 ms cut TLS handshakes short on a loaded machine.
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(limits::kPeerReconnectMax.count()));
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

  // The leader when known and its breaker lets it through; else the next
  // endpoint whose breaker is not open; else the next one regardless.
  std::string Pick() {
    Clock::time_point now = Clock::now();
    if (!leader.empty() && Get(leader).breaker.Update(now) != health::BreakerState::kOpen) return leader;
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

  // Runs `fn(stub, ctx)` until it succeeds, fails for good, or the deadline passes.
  template <typename Fn>
  Status Call(const std::string& what, Fn fn) {
    Clock::time_point deadline = Clock::now() + opt.deadline;
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
      ctx.set_deadline(std::chrono::system_clock::now() + (std::min(deadline, now + opt.attempt_timeout) - now));
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
      bool answered = !Metadata(ctx, kLeaderIdMetadata).empty() || code == StatusCode::kFailedPrecondition ||
                      code == StatusCode::kPermissionDenied || code == StatusCode::kInvalidArgument;
      if (answered) {
        ep.breaker.OnSuccess(now);
      } else {
        ep.breaker.OnFailure(now);
      }
      switch (code) {
        case StatusCode::kPermissionDenied:
        case StatusCode::kInvalidArgument:
        case StatusCode::kAborted:
        case StatusCode::kNotFound:
        case StatusCode::kUnimplemented:
        case StatusCode::kDataLoss:
          return Status(code, what + " at " + last_error);
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
      auto sleep = std::chrono::milliseconds(half + static_cast<int64_t>(rng() % static_cast<uint64_t>(half + 1)));
      if (Clock::now() + sleep >= deadline) break;
      std::this_thread::sleep_for(sleep);
      backoff = std::min(backoff * 2, limits::kClientBackoffMax);
    }
    return DeadlineExceeded(what + " did not succeed within " + std::to_string(opt.deadline.count()) +
                            " ms; last error: " + last_error);
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.endpoints.empty()) return InvalidArgument("no coordinator endpoints given");
  if (options.endpoints.size() > limits::kMaxEndpoints) {
    return InvalidArgument("too many coordinator endpoints (at most " + std::to_string(limits::kMaxEndpoints) + ")");
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

Result<PutResult> Client::Put(const std::string& key, const std::string& value) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);  // the same number on every retry
  pb::PutResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call("put '" + key + "'", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
    return stub->Put(ctx, req, &resp);
  }));
  PutResult out;
  if (resp.has_previous()) out.previous = resp.previous();
  out.index = resp.index();
  return out;
}

Result<CasResult> Client::Cas(const std::string& key, const std::optional<std::string>& expected,
                              const std::string& value) {
  pb::CasRequest req;
  req.set_key(key);
  if (expected) req.set_expected(*expected);
  req.set_value(value);
  req.set_client_id(impl_->opt.client_id);
  req.set_seq(++impl_->seq);
  pb::CasResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call("cas '" + key + "'", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
    return stub->Cas(ctx, req, &resp);
  }));
  CasResult out;
  out.swapped = resp.swapped();
  if (resp.has_previous()) out.previous = resp.previous();
  out.index = resp.index();
  return out;
}

Result<std::optional<std::string>> Client::Get(const std::string& key) {
  pb::GetRequest req;
  req.set_key(key);
  pb::GetResponse resp;
  COHORT_RETURN_IF_ERROR(impl_->Call("get '" + key + "'", [&](pb::Coordinator::Stub* stub, grpc::ClientContext* ctx) {
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
  return out;
}

}  // namespace cohort::coordinator
