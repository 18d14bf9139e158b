// Node (coordinator/server/node.h): starting one - validate the options,
// recover or bootstrap the WAL, load the TLS credentials, start the peer
// senders, the gRPC server, the Raft thread and the job controller - and
// stopping it, waiting on it and reading its metrics. What runs inside is in
// coordinator/server/node_impl.h.
#include "coordinator/server/node.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coordinator/server/metrics_interceptor.h"
#include "coordinator/server/node_impl.h"
#include "coordinator/storage/file_system.h"
#include "core/file_util.h"
#include "core/logging.h"

namespace cohort::coordinator {

using raft::NodeId;

namespace {

Status CheckOptions(const NodeOptions& o) {
  if (o.peers.find(o.id) == o.peers.end()) {
    return InvalidArgument("--id " + std::to_string(o.id) + " is not one of the --peers");
  }
  if (o.token.empty()) return InvalidArgument("empty cluster token; give --token-file");
  if (o.data_dir.empty()) return InvalidArgument("--data-dir is required");
  if (o.tick.count() <= 0 || o.heartbeat < o.tick || o.election <= o.heartbeat) {
    return InvalidArgument("timing: need 0 < tick <= heartbeat < election (tick " +
                           std::to_string(o.tick.count()) + " ms, heartbeat " +
                           std::to_string(o.heartbeat.count()) + " ms, election " +
                           std::to_string(o.election.count()) + " ms)");
  }
  return Status::Ok();
}

// Opens the WAL in opt.data_dir and recovers the durable state; a fresh
// directory bootstraps the cluster of opt.peers. Restores the state machine
// from the recovered snapshot.
Result<raft::InitialState> RecoverState(Node::Impl& impl) {
  const NodeOptions& opt = impl.opt;
  COHORT_RETURN_IF_ERROR(MakeDirs(opt.data_dir));
  impl.wal = std::make_unique<Wal>(PosixFileSystem(), WalOptions{opt.data_dir});
  Result<raft::InitialState> loaded = impl.wal->Load();
  if (!loaded.ok()) {
    return loaded.status().WithContext("node " + std::to_string(opt.id) +
                                       " cannot recover its WAL in " + opt.data_dir +
                                       " (refusing to start; restore the directory from a healthy "
                                       "replica or remove it to rejoin as a new member)");
  }
  raft::InitialState init = std::move(loaded).value();
  bool fresh =
      init.hard_state == raft::HardState{} && init.snapshot.meta.index == 0 && init.entries.empty();
  if (fresh) {
    std::vector<NodeId> voters;
    for (const auto& [id, addr] : opt.peers) voters.push_back(id);
    init = raft::Bootstrap(voters);
    COHORT_RETURN_IF_ERROR(impl.wal->Save(init.hard_state, init.entries, std::nullopt, true)
                               .WithContext("bootstrap WAL in " + opt.data_dir));
    COHORT_LOG_INFO("node {}: new cluster of {} nodes in {}", opt.id, voters.size(), opt.data_dir);
  } else {
    if (!init.snapshot.data.empty()) {
      COHORT_RETURN_IF_ERROR(
          impl.kv.Restore(init.snapshot.data).WithContext("snapshot in " + opt.data_dir));
    }
    COHORT_LOG_INFO(
        "node {}: recovered term {} commit {} snapshot {} entries {} (torn bytes truncated: {})",
        opt.id, init.hard_state.term, init.hard_state.commit, init.snapshot.meta.index,
        init.entries.size(), impl.wal->stats().torn_bytes_truncated);
  }
  return init;
}

// The Raft core's timing in ticks, from the node's in milliseconds.
raft::Config RaftConfig(const NodeOptions& opt) {
  raft::Config cfg;
  cfg.id = opt.id;
  cfg.heartbeat_tick = static_cast<int>(std::max<int64_t>(1, opt.heartbeat / opt.tick));
  cfg.election_tick =
      static_cast<int>(std::max<int64_t>(cfg.heartbeat_tick + 1, opt.election / opt.tick));
  cfg.seed = static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^
             (opt.id * 0x9E3779B97F4A7C15ull);
  return cfg;
}

struct Credentials {
  std::shared_ptr<grpc::ServerCredentials> server;
  std::shared_ptr<grpc::ChannelCredentials> channel;  // toward the peers
  bool tls = false;
};

// TLS when the certificate files are given, plaintext when none is.
Result<Credentials> LoadCredentials(const NodeOptions& opt) {
  Credentials c{grpc::InsecureServerCredentials(), grpc::InsecureChannelCredentials(), false};
  int tls_files = !opt.tls_cert_file.empty() + !opt.tls_key_file.empty() + !opt.tls_ca_file.empty();
  if (tls_files == 0) return c;
  if (tls_files != 3) return InvalidArgument("TLS needs all of --tls-cert, --tls-key and --tls-ca");
  COHORT_ASSIGN_OR_RETURN(std::string cert, ReadFile(opt.tls_cert_file));
  COHORT_ASSIGN_OR_RETURN(std::string key, ReadFile(opt.tls_key_file));
  COHORT_ASSIGN_OR_RETURN(std::string ca, ReadFile(opt.tls_ca_file));
  grpc::SslServerCredentialsOptions so(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  so.pem_root_certs = ca;
  so.pem_key_cert_pairs.push_back({key, cert});
  c.server = grpc::SslServerCredentials(so);
  grpc::SslCredentialsOptions co;
  co.pem_root_certs = ca;
  c.channel = grpc::SslCredentials(co);
  c.tls = true;
  return c;
}

void StartSenders(Node::Impl* impl, const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  for (const auto& [id, addr] : impl->opt.peers) {
    if (id == impl->opt.id) continue;
    impl->senders[id] =
        std::make_unique<PeerSender>(id, addr, impl->opt.token, creds,
                                     [impl](NodeId to, bool ok) { impl->ReportSnapshot(to, ok); });
  }
}

// Creates the services and starts serving them on opt.listen_address;
// *bound_port is the port bound (0 when none was). Null when the server
// could not start.
std::unique_ptr<grpc::Server> StartServer(Node::Impl* impl,
                                          const std::shared_ptr<grpc::ServerCredentials>& creds,
                                          int* bound_port) {
  impl->raft_service = NewRaftService(impl);
  impl->client_service = NewClientService(impl);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(impl->opt.listen_address, creds, bound_port);
  builder.SetMaxReceiveMessageSize(limits::kMaxRpcBytes);
  builder.SetMaxSendMessageSize(limits::kMaxRpcBytes);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT,
                             0);  // a second node on the same port must fail
  // Keep the handler threads: each client write holds one until it commits,
  // and with gRPC's default (2 idle threads at most) every request created
  // and destroyed a thread, which cost the leader more CPU than Raft did.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              limits::kMaxIdleServerThreads);
  // Accept the peers' keepalive pings (gRPC's default allows one per 5 min
  // without data and closes the connection after two more).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(limits::kPeerKeepalive.count() / 2));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<RpcCounterFactory>(
      [impl](const std::string& method, const grpc::Status& s) { impl->CountRpc(method, s); }));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(impl->raft_service.get());
  builder.RegisterService(impl->client_service.get());
  return builder.BuildAndStart();
}

// Port 0 (a single-node group): advertise the port the system chose. Nobody
// knows that port yet, so no handler reads peers meanwhile.
void AdvertiseBoundPort(Node::Impl* impl, int bound_port) {
  NodeOptions& opt = impl->opt;
  std::string& self = opt.peers[opt.id];
  if (self.size() >= 2 && self.compare(self.size() - 2, 2, ":0") == 0) {
    self = self.substr(0, self.size() - 1) + std::to_string(bound_port);
  }
  impl->bound_address =
      opt.listen_address.substr(0, opt.listen_address.rfind(':') + 1) + std::to_string(bound_port);
}

// The job controller, acting while this node leads; it reaches the cluster
// through this node's own address.
Result<std::unique_ptr<JobController>> StartController(Node::Impl* impl) {
  const NodeOptions& opt = impl->opt;
  JobControllerOptions jo;
  jo.endpoint = opt.peers.at(opt.id);
  jo.token = opt.token;
  if (!opt.tls_ca_file.empty()) {
    COHORT_ASSIGN_OR_RETURN(jo.tls_ca_pem, ReadFile(opt.tls_ca_file));
  }
  jo.is_leader = [impl] { return impl->is_leader.load(); };
  return std::make_unique<JobController>(std::move(jo));
}

}  // namespace

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() { Shutdown(); }

Result<std::unique_ptr<Node>> Node::Start(NodeOptions o) {
  COHORT_RETURN_IF_ERROR(CheckOptions(o));
  if (o.listen_address.empty()) o.listen_address = o.peers.at(o.id);
  auto impl = std::make_unique<Impl>(std::move(o));
  Impl* raw = impl.get();
  COHORT_ASSIGN_OR_RETURN(raft::InitialState init, RecoverState(*raw));
  raw->raft = std::make_unique<raft::Raft>(RaftConfig(raw->opt), std::move(init));
  raw->PublishView();
  COHORT_ASSIGN_OR_RETURN(Credentials creds, LoadCredentials(raw->opt));
  StartSenders(raw, creds.channel);
  // The server before the Raft thread, so a port chosen by the system can be
  // written into peers before anything reads them.
  int bound_port = 0;
  raw->server = StartServer(raw, creds.server, &bound_port);
  auto node = std::unique_ptr<Node>(new Node(std::move(impl)));
  if (!raw->server || bound_port == 0) {
    node->Shutdown();
    return Unavailable("node " + std::to_string(raw->opt.id) + " cannot listen on " +
                       raw->opt.listen_address + " (address in use or invalid)");
  }
  AdvertiseBoundPort(raw, bound_port);
  raw->raft_thread = std::thread([raw] { raw->RaftLoop(); });
  COHORT_ASSIGN_OR_RETURN(raw->controller, StartController(raw));
  COHORT_LOG_INFO("node {}: serving on {} ({})", raw->opt.id, raw->opt.listen_address,
                  creds.tls ? "TLS" : "plaintext");
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
    for (const pb::MemberInfo& mi : v.job.members())
      ++m.members_by_state[MemberStateName(static_cast<MemberState>(mi.state()))];
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

void Node::Impl::CountRpc(const std::string& method, const grpc::Status& s) {
  std::lock_guard<std::mutex> lock(metrics_mu);
  NodeMetrics::Rpc& r = rpcs[method];
  ++r.calls;
  if (!s.ok()) ++r.errors[GrpcCodeName(s.error_code())];
}

}  // namespace cohort::coordinator
