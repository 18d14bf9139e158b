#include "coordinator/controller/job_controller.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "coordinator/client/client.h"
#include "coordinator/controller/job_decision.h"
#include "coordinator/health/failure_detector.h"
#include "core/logging.h"
#include "proto/health.grpc.pb.h"

namespace cohort::coordinator {

using Ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

namespace {

// How often a follower (or a leader without a job config) looks again.
constexpr Ms kIdlePoll{200};
// The controller's coordinator calls go to its own node: a short deadline,
// so a lost leadership is noticed quickly.
constexpr Ms kControllerClientDeadline{1000};
// A probe channel's reconnect backoff: a worker back from a pause or a
// partition is reachable again within about this.
constexpr int kProbeReconnectBackoffMs = 200;
constexpr int kProbeMaxReconnectBackoffMs = 1000;
// Phi's floor on the heartbeat inter-arrival deviation.
constexpr Ms kPhiMinStddev{50};

}  // namespace

// One member as the controller sees it.
struct Tracked {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::health::v1::Health::Stub> stub;
  health::CircuitBreaker breaker;
  uint64_t last_heartbeat_ms = 0;
  int ok_probes = 0;       // successful probes since tracked (admission needs one)
  std::string last_error;  // of the last failed probe
  std::string reason;      // why the breaker last opened
  std::string published;   // the HealthKey value last written
};

struct JobController::State {
  std::unique_ptr<Client> client;
  std::optional<JobConfig> config;
  SteadyClock::time_point config_seen{};
  std::map<std::string, Tracked> members;
};

JobController::JobController(JobControllerOptions options) : options_(std::move(options)) {
  thread_ = std::thread([this] { Loop(); });
}

void JobController::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

namespace {

// Probes every member in `who` at once; returns member -> error ("" = serving).
std::map<std::string, std::string> ProbeAll(std::map<std::string, Tracked>& members,
                                            const std::vector<std::string>& who, Ms deadline) {
  struct Call {
    std::string member;
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::health::v1::HealthCheckResponse>> reader;
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
  const auto until = std::chrono::system_clock::now() + deadline;
  for (const auto& id : who) {
    Tracked& t = members.at(id);
    auto c = std::make_unique<Call>();
    c->member = id;
    c->ctx.set_deadline(until);
    grpc::health::v1::HealthCheckRequest req;
    c->reader = t.stub->AsyncCheck(&c->ctx, req, &cq);
    c->reader->Finish(&c->resp, &c->status, c.get());
    calls.push_back(std::move(c));
  }
  std::map<std::string, std::string> out;
  for (size_t done = 0; done < calls.size();) {
    void* tag = nullptr;
    bool ok = false;
    // Every call ends by its deadline; the slack covers the queue itself.
    if (!cq.Next(&tag, &ok)) break;
    auto* c = static_cast<Call*>(tag);
    ++done;
    if (!c->status.ok()) {
      out[c->member] = "probe of " + members.at(c->member).address + ": " +
                       c->status.error_message() + " (gRPC code " +
                       std::to_string(static_cast<int>(c->status.error_code())) + ")";
    } else if (c->resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      out[c->member] = "probe of " + members.at(c->member).address + ": status " +
                       std::to_string(static_cast<int>(c->resp.status()));
    } else {
      out[c->member] = "";
    }
  }
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

// ---- Fetch ------------------------------------------------------------------

// Creates the client and reads the job config once. False: no config yet.
Result<bool> Prepare(const JobControllerOptions& opt, JobController::State& st) {
  if (!st.client) {
    ClientOptions co;
    co.endpoints = {opt.endpoint};
    co.token = opt.token;
    co.tls_ca_pem = opt.tls_ca_pem;
    co.deadline = kControllerClientDeadline;
    COHORT_ASSIGN_OR_RETURN(st.client, Client::Create(co));
  }
  if (st.config) return true;
  COHORT_ASSIGN_OR_RETURN(auto v, st.client->Get(kJobConfigKey));
  if (!v) return false;
  COHORT_ASSIGN_OR_RETURN(auto c, JobConfig::FromJson(*v));
  st.config = c;
  st.config_seen = SteadyClock::now();
  COHORT_LOG_INFO("job controller: job '{}' (min {}, max {})", c.job, c.min, c.max);
  return true;
}

// A member newly seen (or at a new address): a probe channel and a breaker.
Tracked NewTracked(const std::string& address, const JobConfig& cfg) {
  Tracked t;
  t.address = address;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kProbeReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kProbeReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kProbeMaxReconnectBackoffMs);
  t.channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  t.stub = grpc::health::v1::Health::NewStub(t.channel);
  health::CircuitBreaker::Options bo;
  bo.failure_threshold = cfg.failure_threshold;
  bo.phi_threshold = cfg.phi_threshold;
  bo.cooldown = cfg.cooldown;
  bo.max_cooldown = kMaxCooldown;
  bo.detector.acceptable_pause = cfg.health_pause;
  bo.detector.min_stddev = kPhiMinStddev;
  bo.detector.first_interval_estimate = cfg.probe_interval;
  t.breaker = health::CircuitBreaker(bo);
  return t;
}

// Tracks the job's members (forgets those that left); a heartbeat arrival
// (last_heartbeat_ms moving) of a live member feeds its breaker's phi.
void Track(const JobInfo& job, const JobConfig& cfg, SteadyClock::time_point now,
           std::map<std::string, Tracked>& members) {
  std::set<std::string> present;
  for (const auto& m : job.members) {
    if (m.state == MemberState::kLeft) continue;
    present.insert(m.id);
    auto it = members.find(m.id);
    if (it == members.end() || it->second.address != m.address) {
      it = members.insert_or_assign(m.id, NewTracked(m.address, cfg)).first;
    }
    Tracked& t = it->second;
    if (m.last_heartbeat_ms != t.last_heartbeat_ms) {
      t.last_heartbeat_ms = m.last_heartbeat_ms;
      if (IsLive(m.state)) t.breaker.OnSuccess(now);  // an arrival: feeds phi
    }
  }
  for (auto it = members.begin(); it != members.end();) {
    it = present.count(it->first) ? std::next(it) : members.erase(it);
  }
}

JobView ViewOf(const JobInfo& job, SteadyClock::time_point config_seen) {
  JobView v;
  v.epoch = job.epoch;
  v.ranks = job.ranks;
  for (const auto& m : job.members) v.states[m.id] = m.state;
  v.config_seen = config_seen;
  return v;
}

BreakerStates BreakersOf(const std::map<std::string, Tracked>& members) {
  BreakerStates out;
  for (const auto& [id, t] : members) out[id] = MemberHealth{t.breaker.state(), t.ok_probes};
  return out;
}

// What one round of probes found.
struct Probes {
  std::map<std::string, std::string> errors;           // probed member -> error ("" = serving)
  std::map<std::string, health::BreakerState> before;  // every tracked member, before the probes
  SteadyClock::time_point after;                       // when the probes ended
};

// Probes the live members whose breaker lets them, and feeds the results to
// the breakers.
Probes ProbeRound(const JobView& view, const JobConfig& cfg, SteadyClock::time_point now,
                  std::map<std::string, Tracked>& members) {
  Probes p;
  std::vector<std::string> probe;
  for (auto& [id, t] : members) {
    t.breaker.Update(now);
    auto s = view.states.find(id);
    if (s != view.states.end() && IsLive(s->second) && t.breaker.ShouldProbe()) probe.push_back(id);
  }
  for (const auto& [id, t] : members) p.before[id] = t.breaker.state();
  p.errors = ProbeAll(members, probe, cfg.probe_deadline);
  p.after = SteadyClock::now();
  for (const auto& [id, err] : p.errors) {
    Tracked& t = members.at(id);
    if (err.empty()) {
      t.breaker.OnSuccess(p.after);
      ++t.ok_probes;
    } else {
      t.last_error = err;
      t.breaker.OnFailure(p.after);
    }
  }
  return p;
}

// ---- Act --------------------------------------------------------------------

// Why a breaker that just opened opened: failed probes, or silence (phi).
std::string OpenReason(const Tracked& t, bool probe_failed, SteadyClock::time_point now) {
  if (probe_failed) {
    return std::to_string(t.breaker.consecutive_failures()) +
           " failed probe(s) in a row (last: " + t.last_error + ")";
  }
  char phi[32];
  std::snprintf(phi, sizeof(phi), "%.1f", t.breaker.phi(now));
  return std::string("heartbeats stopped (phi ") + phi + ")";
}

// After the probes: marks failed the members ShouldEvict picks (updating
// view->states) and publishes each member's breaker under HealthKey when it
// changed.
void EvictAndPublish(Client& client, const JobConfig& cfg, const Probes& probes, JobView* view,
                     std::map<std::string, Tracked>& members) {
  for (auto& [id, t] : members) {
    const auto s = t.breaker.Update(probes.after);
    const health::BreakerState was = probes.before.at(id);
    if (s == health::BreakerState::kOpen && was != health::BreakerState::kOpen) {
      auto r = probes.errors.find(id);
      t.reason = OpenReason(t, r != probes.errors.end() && !r->second.empty(), probes.after);
    }
    auto state = view->states.find(id);
    if (state != view->states.end() && ShouldEvict(state->second, was, s) &&
        client.MarkFailed(id, view->epoch).ok()) {
      state->second = MemberState::kFailed;
      COHORT_LOG_WARN("job controller: member {} evicted: {}", id, t.reason);
    }
    nlohmann::json h = {{"breaker", std::string(health::BreakerStateName(s))},
                        {"reason", t.reason},
                        {"opens", t.breaker.opens()}};
    const std::string text = h.dump();
    if (text != t.published && client.Put(HealthKey(cfg.job, id), text).ok()) t.published = text;
  }
}

// Decides the next epoch (reading ReformKey when the decision needs it) and
// commits it.
Status DecideAndCommit(Client& client, const JobConfig& cfg, JobView view,
                       const BreakerStates& breakers, SteadyClock::time_point now) {
  EpochDecision d = DecideNextEpoch(view, breakers, cfg, now);
  if (d.kind == EpochDecision::Kind::kReadReform) {
    COHORT_ASSIGN_OR_RETURN(auto reform, client.Get(ReformKey(cfg.job, view.epoch)));
    view.reform_requested = reform.has_value();
    if (reform) {
      COHORT_LOG_INFO("job controller: member {} asked to re-form epoch {}", *reform, view.epoch);
    }
    d = DecideNextEpoch(view, breakers, cfg, now);
  }
  if (d.kind != EpochDecision::Kind::kCommit) return Status::Ok();
  COHORT_ASSIGN_OR_RETURN(uint64_t e, client.CommitEpoch(view.epoch, d.members));
  std::string list;
  for (const auto& id : d.members) list += (list.empty() ? "" : ",") + id;
  COHORT_LOG_INFO("job controller: epoch {}: {} members [{}]", e, d.members.size(), list);
  return Status::Ok();
}

// One round while leader: fetch (config, done, job), probe, decide, act.
Status RunRound(const JobControllerOptions& opt, JobController::State& st) {
  COHORT_ASSIGN_OR_RETURN(bool ready, Prepare(opt, st));
  if (!ready) return Status::Ok();
  Client& client = *st.client;
  const JobConfig& cfg = *st.config;
  COHORT_ASSIGN_OR_RETURN(auto done, client.Get(DoneKey(cfg.job)));
  if (done) return Status::Ok();
  COHORT_ASSIGN_OR_RETURN(JobInfo job, client.GetJob());
  const auto now = SteadyClock::now();
  JobView view = ViewOf(job, st.config_seen);
  Track(job, cfg, now, st.members);
  const Probes probes = ProbeRound(view, cfg, now, st.members);
  EvictAndPublish(client, cfg, probes, &view, st.members);
  return DecideAndCommit(client, cfg, std::move(view), BreakersOf(st.members), now);
}

}  // namespace

void JobController::Loop() {
  State st;
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    const Ms wait = st.config ? st.config->probe_interval : kIdlePoll;
    cv_.wait_for(l, wait, [this] { return stop_; });
    if (stop_) break;
    l.unlock();
    if (!options_.is_leader()) {
      st = State{};  // a later leadership starts afresh
    } else {
      Status s = RunRound(options_, st);
      if (!s.ok()) {
        COHORT_LOG_DEBUG("job controller: {}", s.message());
        if (s.code() == StatusCode::kInvalidArgument) st.config.reset();
      }
    }
    std::map<std::string, int> breakers;
    for (const auto& [id, t] : st.members) {
      const auto b = t.breaker.state();
      breakers[id] = b == health::BreakerState::kClosed     ? 0
                     : b == health::BreakerState::kHalfOpen ? 1
                                                            : 2;
    }
    l.lock();
    breakers_ = std::move(breakers);
  }
}

std::map<std::string, int> JobController::Breakers() const {
  std::lock_guard<std::mutex> l(mu_);
  return breakers_;
}

}  // namespace cohort::coordinator
