#include "tools/coordinator_cmd.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cohort/config.h"
#include "coordinator/client/client.h"
#include "coordinator/client/flags.h"
#include "coordinator/controller/job_controller.h"
#include "coordinator/server/node.h"
#include "core/clock.h"
#include "core/file_util.h"
#include "core/logging.h"
#include "runtime/worker_metrics.h"

namespace cohort::tools {
namespace {

int Fail(const std::string& cmd, const Status& s) {
  std::cerr << "cohort " << cmd << ": " << s.ToString() << "\n";
  return 1;
}

Result<std::unique_ptr<coordinator::Client>> MakeClient(const ClientCmdOptions& opt) {
  COHORT_ASSIGN_OR_RETURN(std::vector<std::string> endpoints,
                          coordinator::ParseEndpoints(opt.coordinator));
  COHORT_ASSIGN_OR_RETURN(std::string token, coordinator::ReadTokenFile(opt.token_file));
  coordinator::ClientOptions co;
  co.endpoints = std::move(endpoints);
  co.token = std::move(token);
  co.deadline = std::chrono::milliseconds(std::max(1, opt.timeout_ms));
  co.attempt_timeout = std::min(co.attempt_timeout, co.deadline);
  if (!opt.tls_ca.empty()) {
    Result<std::string> ca = ReadFile(opt.tls_ca);
    if (!ca.ok()) return ca.status().WithContext("--tls-ca");
    co.tls_ca_pem = std::move(ca).value();
  }
  return coordinator::Client::Create(std::move(co));
}

// What the job controller and the workers publish about each member beside
// the registry: the breaker (HealthKey) and the last completed step (StepKey).
struct WorkerExtra {
  std::string breaker = "-";  // closed | open | half-open; "-": not probed yet
  std::string reason;         // why the breaker last opened
  int64_t step = -1;          // -1: not reported
};
using WorkerExtras = std::map<std::string, WorkerExtra>;

// Best effort: an unreachable leader or a job without a config leaves "-".
WorkerExtras FetchExtras(coordinator::Client& client, const coordinator::JobInfo& job) {
  WorkerExtras out;
  auto cfg_text = client.Get(coordinator::kJobConfigKey);
  if (!cfg_text.ok() || !*cfg_text) return out;
  auto cfg = coordinator::JobConfig::FromJson(**cfg_text);
  if (!cfg.ok()) return out;
  for (const coordinator::MemberInfo& m : job.members) {
    WorkerExtra& e = out[m.id];
    if (auto h = client.Get(coordinator::HealthKey(cfg->job, m.id)); h.ok() && *h) {
      auto j = nlohmann::json::parse(**h, nullptr, false);
      if (!j.is_discarded()) {
        e.breaker = j.value("breaker", "-");
        e.reason = j.value("reason", "");
      }
    }
    if (auto st = client.Get(coordinator::StepKey(cfg->job, m.id)); st.ok() && *st) {
      char* end = nullptr;
      const long long v = std::strtoll((*st)->c_str(), &end, 10);
      if (end != nullptr && *end == '\0') e.step = v;
    }
  }
  return out;
}

nlohmann::json JobJson(const coordinator::JobInfo& job, const WorkerExtras& extras = {}) {
  nlohmann::json j;
  j["epoch"] = job.epoch;
  nlohmann::json members = nlohmann::json::array();
  const uint64_t now_ms = static_cast<uint64_t>(WallClockMs());
  for (const coordinator::MemberInfo& m : job.members) {
    auto it = extras.find(m.id);
    const WorkerExtra e = it == extras.end() ? WorkerExtra{} : it->second;
    members.push_back(
        {{"id", m.id},
         {"address", m.address},
         {"state", coordinator::MemberStateName(m.state)},
         {"rank", m.rank},
         {"last_heartbeat_ms", m.last_heartbeat_ms},
         {"heartbeat_age_ms", m.last_heartbeat_ms == 0
                                  ? nlohmann::json(nullptr)
                                  : nlohmann::json(static_cast<int64_t>(now_ms) -
                                                   static_cast<int64_t>(m.last_heartbeat_ms))},
         {"breaker", e.breaker},
         {"breaker_reason", e.reason},
         {"last_step", e.step < 0 ? nlohmann::json(nullptr) : nlohmann::json(e.step)}});
  }
  j["members"] = std::move(members);
  j["ranks"] = job.ranks;
  auto ckpt = [](const coordinator::CheckpointInfo& c) {
    return nlohmann::json{
        {"epoch", c.epoch}, {"step", c.step}, {"path", c.path}, {"checksum", c.checksum}};
  };
  j["checkpoint"] = job.last_checkpoint ? ckpt(*job.last_checkpoint) : nlohmann::json(nullptr);
  nlohmann::json pending = nlohmann::json::array();
  for (const coordinator::CheckpointInfo& c : job.pending) pending.push_back(ckpt(c));
  j["pending_checkpoints"] = std::move(pending);
  j["revision"] = job.revision;
  return j;
}

void PrintJob(const coordinator::JobInfo& job, const WorkerExtras& extras = {}) {
  std::printf("epoch: %llu  world size: %zu\n", static_cast<unsigned long long>(job.epoch),
              job.ranks.size());
  if (!job.members.empty()) {
    std::printf("%-28s %-22s %-8s %-5s %-9s %-14s %s\n", "MEMBER", "ADDRESS", "STATE", "RANK",
                "BREAKER", "HEARTBEAT AGO", "LAST STEP");
    const uint64_t now_ms = static_cast<uint64_t>(WallClockMs());
    for (const coordinator::MemberInfo& m : job.members) {
      auto it = extras.find(m.id);
      const WorkerExtra e = it == extras.end() ? WorkerExtra{} : it->second;
      std::string rank = m.rank < 0 ? "-" : std::to_string(m.rank);
      std::string ago = m.last_heartbeat_ms == 0
                            ? "-"
                            : std::to_string(static_cast<long long>(now_ms) -
                                             static_cast<long long>(m.last_heartbeat_ms)) +
                                  " ms";
      std::string step = e.step < 0 ? "-" : std::to_string(e.step);
      std::printf("%-28s %-22s %-8s %-5s %-9s %-14s %s\n", m.id.c_str(), m.address.c_str(),
                  coordinator::MemberStateName(m.state), rank.c_str(), e.breaker.c_str(),
                  ago.c_str(), step.c_str());
    }
  }
  if (job.last_checkpoint) {
    std::printf("checkpoint: step %llu (epoch %llu) %s %s\n",
                static_cast<unsigned long long>(job.last_checkpoint->step),
                static_cast<unsigned long long>(job.last_checkpoint->epoch),
                job.last_checkpoint->path.c_str(), job.last_checkpoint->checksum.c_str());
  } else {
    std::printf("checkpoint: none committed\n");
  }
}

// The node's metrics, read at each scrape. Another part of the coordinator
// (breakers per worker, say) adds its own with registry.AddCollector.
void AddNodeCollector(metrics::Registry& registry, const coordinator::Node* node) {
  registry.AddCollector([node](metrics::MetricsSink& out) {
    const coordinator::NodeMetrics m = node->Metrics();
    const auto gauge = [&out](const char* name, const char* help, double v) {
      out.GaugeSample(name, help, {}, v);
    };
    gauge("cohort_coordinator_term", "Raft term", static_cast<double>(m.term));
    gauge("cohort_coordinator_commit_index", "Raft commit index",
          static_cast<double>(m.commit_index));
    gauge("cohort_coordinator_applied_index",
          "Index of the last entry applied to the state machine",
          static_cast<double>(m.applied_index));
    gauge("cohort_coordinator_last_index", "Index of the last entry in this node's log",
          static_cast<double>(m.last_index));
    gauge("cohort_coordinator_snapshot_index", "Index of the last snapshot",
          static_cast<double>(m.snapshot_index));
    gauge("cohort_coordinator_is_leader", "1 when this node is the Raft leader",
          m.role == "leader" ? 1 : 0);
    gauge("cohort_coordinator_leader_id", "The leader's node id as this node knows it (0: none)",
          static_cast<double>(m.leader));
    gauge("cohort_coordinator_epoch", "The job's membership epoch as this node applied it",
          static_cast<double>(m.epoch));
    for (const char* state : {"joining", "active", "failed", "left"}) {
      auto it = m.members_by_state.find(state);
      out.GaugeSample("cohort_coordinator_members", "Members of the job by state",
                      {{"state", state}}, it == m.members_by_state.end() ? 0 : it->second);
    }
    for (const auto& [method, r] : m.rpcs) {
      out.CounterSample("cohort_coordinator_rpcs_total", "RPCs this node answered, by method",
                        {{"method", method}}, static_cast<double>(r.calls));
      for (const auto& [code, n] : r.errors) {
        out.CounterSample("cohort_coordinator_rpc_errors_total",
                          "RPCs this node answered with an error",
                          {{"method", method}, {"code", code}}, static_cast<double>(n));
      }
    }
    for (const auto& [member, state] : m.breakers) {
      out.GaugeSample("cohort_coordinator_breaker_state",
                      "The job controller's circuit breaker per worker: 0 closed, 1 half-open, 2 "
                      "open (leader only)",
                      {{"worker", member}}, state);
    }
    out.SummarySample("cohort_coordinator_wal_sync_seconds",
                      "WAL writes that end in fsync: time (write + fsync)", {}, m.wal_sync_seconds,
                      m.wal_syncs);
  });
}

}  // namespace

int RunCoordinator(const CoordinatorCmdOptions& opt) {
  InitLogging("coordinator " + std::to_string(opt.id),
              ParseLogLevel(opt.log_level, LogLevel::kInfo));
  Result<std::map<uint64_t, std::string>> peers = coordinator::ParsePeers(opt.peers);
  if (!peers.ok()) return Fail("coordinator", peers.status());
  Result<std::string> token = coordinator::ReadTokenFile(opt.token_file);
  if (!token.ok()) return Fail("coordinator", token.status());
  if (Status m = CheckMetricsPort(opt.metrics_port); !m.ok()) {
    std::cerr << "cohort coordinator: " << m.ToString() << "\n";
    return 2;
  }
  if (opt.tick_ms <= 0 || opt.heartbeat_ms <= 0 || opt.election_ms <= 0) {
    return Fail("coordinator",
                InvalidArgument("--tick-ms, --heartbeat-ms and --election-ms must be positive"));
  }
  coordinator::NodeOptions no;
  no.id = opt.id;
  no.peers = std::move(peers).value();
  no.listen_address = opt.listen;
  no.data_dir = opt.data_dir;
  no.token = std::move(token).value();
  no.tick = std::chrono::milliseconds(opt.tick_ms);
  no.heartbeat = std::chrono::milliseconds(opt.heartbeat_ms);
  no.election = std::chrono::milliseconds(opt.election_ms);
  no.snapshot_every = opt.snapshot_every;
  no.tls_cert_file = opt.tls_cert;
  no.tls_key_file = opt.tls_key;
  no.tls_ca_file = opt.tls_ca;

  // SIGINT/SIGTERM are taken by one thread (sigwait), blocked everywhere
  // else: the threads started below inherit this mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  Result<std::unique_ptr<coordinator::Node>> node = coordinator::Node::Start(std::move(no));
  if (!node.ok()) return Fail("coordinator", node.status());
  coordinator::Node* n = node->get();
  // The Prometheus endpoint (--metrics-port), after the node it reads.
  metrics::Registry registry;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (opt.metrics_port != kMetricsOff) {
    registry
        .AddGauge("cohort_build_info", "Cohort's version; always 1",
                  {{"version", COHORT_VERSION},
                   {"role", "coordinator"},
                   {"node", std::to_string(opt.id)}})
        ->Set(1);
    AddNodeCollector(registry, n);
    auto served = ServeMetrics(&registry, opt.metrics_address, opt.metrics_port,
                               "cohort coordinator " + std::to_string(opt.id));
    if (!served.ok()) {
      n->Shutdown();
      return Fail("coordinator", served.status());
    }
    metrics_server = std::move(served).value();
  }
  std::thread([set, n] {
    int sig = 0;
    sigwait(&set, &sig);
    COHORT_LOG_INFO("signal {}: shutting down", sig);
    n->Shutdown();
  }).detach();
  Status s = n->Wait();
  metrics_server.reset();  // stops scrapes before the node they read goes
  n->Shutdown();
  if (!s.ok()) return Fail("coordinator", s);
  return 0;
}

int RunStatus(const ClientCmdOptions& opt, bool json) {
  Result<std::unique_ptr<coordinator::Client>> client = MakeClient(opt);
  if (!client.ok()) return Fail("status", client.status());
  Result<std::vector<std::string>> given = coordinator::ParseEndpoints(opt.coordinator);
  std::vector<std::string> addrs = *given;
  std::map<std::string, Result<coordinator::NodeStatus>> views;
  // Ask every endpoint given, then every member they name that was not given.
  for (size_t i = 0; i < addrs.size() && i < coordinator::limits::kMaxEndpoints; ++i) {
    Result<coordinator::NodeStatus> st = (*client)->StatusOf(addrs[i]);
    if (st.ok()) {
      for (const auto& [id, a] : st->nodes) {
        if (std::find(addrs.begin(), addrs.end(), a) == addrs.end()) addrs.push_back(a);
      }
    }
    views.emplace(addrs[i], std::move(st));
  }
  // The leader: a node that says it leads, at the highest term.
  const coordinator::NodeStatus* leader = nullptr;
  uint64_t term = 0, commit = 0;
  Status first_error;
  size_t reachable = 0;
  for (const auto& [a, st] : views) {
    if (!st.ok()) {
      if (first_error.ok()) first_error = st.status();
      continue;
    }
    ++reachable;
    term = std::max(term, st->term);
    commit = std::max(commit, st->commit_index);
    if (st->role == "leader" && (leader == nullptr || st->term > leader->term)) leader = &*st;
  }
  if (reachable == 0)
    return Fail("status", first_error.WithContext("no coordinator node answered"));
  if (leader != nullptr) commit = leader->commit_index;
  // The job as the leader has applied it (else the most advanced node).
  coordinator::JobInfo job_view;
  {
    const coordinator::NodeStatus* best = leader;
    for (const auto& [a, st] : views) {
      if (best == nullptr && st.ok()) best = &*st;
      if (leader == nullptr && st.ok() && st->applied_index > best->applied_index) best = &*st;
    }
    if (best != nullptr) job_view = best->job;
  }

  if (json) {
    nlohmann::json j;
    j["leader"] = leader ? leader->node_id : 0;
    j["leader_address"] = "";
    for (const auto& [a, st] : views) {
      if (leader && st.ok() && st->node_id == leader->node_id) j["leader_address"] = a;
    }
    j["term"] = term;
    j["commit_index"] = commit;
    j["applied_index"] = leader ? leader->applied_index : 0;
    nlohmann::json job = JobJson(job_view, FetchExtras(**client, job_view));
    j["epoch"] = job["epoch"];
    j["members"] = job["members"];
    j["ranks"] = job["ranks"];
    j["checkpoint"] = job["checkpoint"];
    nlohmann::json nodes = nlohmann::json::array();
    for (const auto& [a, st] : views) {
      nlohmann::json n;
      n["address"] = a;
      n["reachable"] = st.ok();
      if (st.ok()) {
        n["id"] = st->node_id;
        n["role"] = st->role;
        n["term"] = st->term;
        n["leader"] = st->leader_id;
        n["commit_index"] = st->commit_index;
        n["applied_index"] = st->applied_index;
        n["last_index"] = st->last_index;
        n["snapshot_index"] = st->snapshot_index;
      } else {
        n["error"] = st.status().ToString();
      }
      nodes.push_back(std::move(n));
    }
    j["nodes"] = std::move(nodes);
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::printf("%-4s %-22s %-13s %-6s %-8s %-8s %-8s %-6s\n", "NODE", "ADDRESS", "ROLE", "TERM",
              "COMMIT", "APPLIED", "LAST", "LEADER");
  for (const auto& [a, st] : views) {
    if (!st.ok()) {
      std::printf("%-4s %-22s unreachable: %s\n", "?", a.c_str(), st.status().ToString().c_str());
      continue;
    }
    std::printf("%-4llu %-22s %-13s %-6llu %-8llu %-8llu %-8llu %-6llu\n",
                static_cast<unsigned long long>(st->node_id), a.c_str(), st->role.c_str(),
                static_cast<unsigned long long>(st->term),
                static_cast<unsigned long long>(st->commit_index),
                static_cast<unsigned long long>(st->applied_index),
                static_cast<unsigned long long>(st->last_index),
                static_cast<unsigned long long>(st->leader_id));
  }
  std::printf("leader: %llu  term: %llu  commit: %llu  nodes answering: %zu of %zu\n",
              static_cast<unsigned long long>(leader ? leader->node_id : 0),
              static_cast<unsigned long long>(term), static_cast<unsigned long long>(commit),
              reachable, views.size());
  PrintJob(job_view, FetchExtras(**client, job_view));
  return 0;
}

int RunKv(const ClientCmdOptions& opt, const KvCmdOptions& kv) {
  const std::string cmd = "kv " + kv.op;
  Result<std::unique_ptr<coordinator::Client>> client = MakeClient(opt);
  if (!client.ok()) return Fail(cmd, client.status());
  if (kv.op == "get") {
    Result<std::optional<std::string>> v = (*client)->Get(kv.key);
    if (!v.ok()) return Fail(cmd, v.status());
    if (!v->has_value()) return Fail(cmd, NotFound("key '" + kv.key + "' does not exist"));
    std::cout << **v << "\n";
    return 0;
  }
  if (kv.op == "put") {
    Result<coordinator::PutResult> r = (*client)->Put(kv.key, kv.value);
    if (!r.ok()) return Fail(cmd, r.status());
    std::cout << "OK\n";
    return 0;
  }
  if (kv.op == "cas") {
    std::optional<std::string> expected;
    if (!kv.expect_absent) expected = kv.expected;
    Result<coordinator::CasResult> r = (*client)->Cas(kv.key, expected, kv.value);
    if (!r.ok()) return Fail(cmd, r.status());
    if (!r->swapped) {
      std::string now = r->previous ? "holds '" + *r->previous + "'" : "does not exist";
      return Fail(cmd, FailedPrecondition("not swapped: key '" + kv.key + "' " + now));
    }
    std::cout << "OK\n";
    return 0;
  }
  if (kv.op == "watch") {
    if (kv.count < 0) return Fail(cmd, InvalidArgument("need --count >= 0"));
    // Server-side long polls from revision to revision: no change is missed
    // (a deletion prints an empty line, or "KEY (deleted)" with --prefix).
    uint64_t after = 0;  // 0: the first answer is the current value, if any
    bool first = true;
    for (int printed = 0; kv.count == 0 || printed < kv.count;) {
      Result<coordinator::WatchResult> w =
          (*client)->Watch(kv.key, kv.prefix, after, coordinator::limits::kMaxWatchWait);
      if (!w.ok()) return Fail(cmd, w.status());
      for (const coordinator::WatchEvent& e : w->events) {
        after = std::max(after, e.mod_revision);
        if (first && e.deleted) continue;  // deleted before we started watching
        if (kv.count != 0 && printed >= kv.count) break;
        if (kv.prefix) {
          std::cout << e.key << (e.deleted ? " (deleted)" : " " + e.value) << std::endl;
        } else {
          std::cout << (e.deleted ? "" : e.value)
                    << std::endl;  // flushed: a pipe reader sees each change at once
        }
        ++printed;
      }
      if (!w->more) after = std::max(after, w->revision);
      first = false;
    }
    return 0;
  }
  return Fail(cmd, InvalidArgument("unknown kv operation '" + kv.op + "' (get, put, cas, watch)"));
}

int RunJobShow(const ClientCmdOptions& opt, bool json) {
  Result<std::unique_ptr<coordinator::Client>> client = MakeClient(opt);
  if (!client.ok()) return Fail("job show", client.status());
  Result<coordinator::JobInfo> job = (*client)->GetJob();
  if (!job.ok()) return Fail("job show", job.status());
  if (json) {
    std::cout << JobJson(*job, FetchExtras(**client, *job)).dump() << "\n";
  } else {
    PrintJob(*job, FetchExtras(**client, *job));
  }
  return 0;
}

int RunKvBench(const ClientCmdOptions& opt, const KvBenchOptions& bench) {
  if (bench.clients < 1 || bench.clients > 1024 || bench.ops < 1 || bench.value_bytes < 0 ||
      bench.value_bytes > 64 * 1024) {
    return Fail(
        "kv bench",
        InvalidArgument("need 1 <= --clients <= 1024, --ops >= 1, 0 <= --value-bytes <= 65536"));
  }
  std::vector<std::unique_ptr<coordinator::Client>> clients;
  for (int i = 0; i < bench.clients; ++i) {
    Result<std::unique_ptr<coordinator::Client>> c = MakeClient(opt);
    if (!c.ok()) return Fail("kv bench", c.status());
    clients.push_back(std::move(c).value());
  }
  // Warm up: find the leader once per client.
  for (auto& c : clients) {
    Result<coordinator::PutResult> r = c->Put("bench/warmup", "x");
    if (!r.ok()) return Fail("kv bench", r.status());
  }
  const std::string value(static_cast<size_t>(bench.value_bytes), 'v');
  std::vector<std::vector<double>> lat(clients.size());
  std::vector<int> errors(clients.size(), 0);
  std::vector<std::string> first_error(clients.size());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (size_t t = 0; t < clients.size(); ++t) {
    threads.emplace_back([&, t] {
      lat[t].reserve(static_cast<size_t>(bench.ops));
      for (int i = 0; i < bench.ops; ++i) {
        auto s = std::chrono::steady_clock::now();
        Result<coordinator::PutResult> r =
            clients[t]->Put("bench/" + std::to_string(t) + "/" + std::to_string(i % 1000), value);
        auto e = std::chrono::steady_clock::now();
        if (!r.ok()) {
          if (errors[t]++ == 0) first_error[t] = r.status().ToString();
          continue;
        }
        lat[t].push_back(std::chrono::duration<double, std::milli>(e - s).count());
      }
    });
  }
  for (auto& th : threads) th.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> all;
  int errs = 0;
  for (size_t t = 0; t < clients.size(); ++t) {
    all.insert(all.end(), lat[t].begin(), lat[t].end());
    errs += errors[t];
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    if (all.empty()) return 0.0;
    size_t i = std::min(all.size() - 1, static_cast<size_t>(p * static_cast<double>(all.size())));
    return all[i];
  };
  nlohmann::json j;
  j["clients"] = bench.clients;
  j["ops"] = all.size();
  j["errors"] = errs;
  j["seconds"] = secs;
  j["puts_per_s"] = static_cast<double>(all.size()) / secs;
  j["p50_ms"] = pct(0.50);
  j["p99_ms"] = pct(0.99);
  j["value_bytes"] = bench.value_bytes;
  std::cout << j.dump() << "\n";
  if (errs > 0) {
    for (const std::string& e : first_error) {
      if (!e.empty())
        return Fail("kv bench", Status(StatusCode::kUnavailable,
                                       std::to_string(errs) + " puts failed; first: " + e));
    }
  }
  return 0;
}

}  // namespace cohort::tools
