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

bool Live(MemberState state) { return IsLive(state); }

}  // namespace

// One member as the controller sees it.
struct Tracked {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::health::v1::Health::Stub> stub;
  health::CircuitBreaker breaker;
  uint64_t last_heartbeat_ms = 0;
  int ok_probes = 0;          // successful probes since tracked (admission needs one)
  std::string last_error;     // of the last failed probe
  std::string reason;         // why the breaker last opened
  std::string published;      // the HealthKey value last written
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

Status RunRound(const JobControllerOptions& opt, JobController::State& st) {
  if (!st.client) {
    ClientOptions co;
    co.endpoints = {opt.endpoint};
    co.token = opt.token;
    co.tls_ca_pem = opt.tls_ca_pem;
    co.deadline = kControllerClientDeadline;
    COHORT_ASSIGN_OR_RETURN(st.client, Client::Create(co));
  }
  Client& client = *st.client;
  if (!st.config) {
    COHORT_ASSIGN_OR_RETURN(auto v, client.Get(kJobConfigKey));
    if (!v) return Status::Ok();
    COHORT_ASSIGN_OR_RETURN(auto c, JobConfig::FromJson(*v));
    st.config = c;
    st.config_seen = SteadyClock::now();
    COHORT_LOG_INFO("job controller: job '{}' (min {}, max {})", c.job, c.min, c.max);
  }
  const JobConfig& cfg = *st.config;
  COHORT_ASSIGN_OR_RETURN(auto done, client.Get(DoneKey(cfg.job)));
  if (done) return Status::Ok();
  COHORT_ASSIGN_OR_RETURN(JobInfo job, client.GetJob());
  const auto now = SteadyClock::now();

  // Track the members; forget those that left.
  std::set<std::string> present;
  for (const auto& m : job.members) {
    if (m.state == MemberState::kLeft) continue;
    present.insert(m.id);
    auto it = st.members.find(m.id);
    if (it == st.members.end() || it->second.address != m.address) {
      Tracked t;
      t.address = m.address;
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kProbeReconnectBackoffMs);
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kProbeReconnectBackoffMs);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kProbeMaxReconnectBackoffMs);
      t.channel = grpc::CreateCustomChannel(m.address, grpc::InsecureChannelCredentials(), args);
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
      it = st.members.insert_or_assign(m.id, std::move(t)).first;
    }
    Tracked& t = it->second;
    if (m.last_heartbeat_ms != t.last_heartbeat_ms) {
      t.last_heartbeat_ms = m.last_heartbeat_ms;
      if (Live(m.state)) t.breaker.OnSuccess(now);  // an arrival: feeds phi
    }
  }
  for (auto it = st.members.begin(); it != st.members.end();) {
    it = present.count(it->first) ? std::next(it) : st.members.erase(it);
  }

  // Probe the live members whose breaker lets them be probed.
  std::map<std::string, MemberState> state_of;
  for (const auto& m : job.members) state_of[m.id] = m.state;
  std::vector<std::string> probe;
  for (auto& [id, t] : st.members) {
    t.breaker.Update(now);
    if (state_of.count(id) && Live(state_of[id]) && t.breaker.ShouldProbe()) probe.push_back(id);
  }
  std::map<std::string, health::BreakerState> before;
  for (const auto& [id, t] : st.members) before[id] = t.breaker.state();
  const auto results = ProbeAll(st.members, probe, cfg.probe_deadline);
  const auto after = SteadyClock::now();
  for (const auto& [id, err] : results) {
    Tracked& t = st.members.at(id);
    if (err.empty()) {
      t.breaker.OnSuccess(after);
      ++t.ok_probes;
    } else {
      t.last_error = err;
      t.breaker.OnFailure(after);
    }
  }
  // Open breakers evict.
  for (auto& [id, t] : st.members) {
    const auto s = t.breaker.Update(after);
    if (s == health::BreakerState::kOpen && before[id] != health::BreakerState::kOpen) {
      char phi[32];
      std::snprintf(phi, sizeof(phi), "%.1f", t.breaker.phi(after));
      t.reason = results.count(id) && !results.at(id).empty()
                     ? std::to_string(t.breaker.consecutive_failures()) +
                           " failed probe(s) in a row (last: " + t.last_error + ")"
                     : std::string("heartbeats stopped (phi ") + phi + ")";
    }
    // An open breaker evicts an epoch's member, or one whose breaker just
    // opened; a member that joined again while its breaker is still open
    // only waits (it is not eligible until the breaker closes).
    const bool newly_open = before[id] != health::BreakerState::kOpen;
    if (s == health::BreakerState::kOpen && Live(state_of[id]) &&
        (state_of[id] == MemberState::kActive || newly_open)) {
      Status f = client.MarkFailed(id, job.epoch);
      if (f.ok()) {
        state_of[id] = MemberState::kFailed;
        COHORT_LOG_WARN("job controller: member {} evicted: {}", id, t.reason);
      }
    }
    nlohmann::json h = {{"breaker", std::string(health::BreakerStateName(s))},
                        {"reason", t.reason},
                        {"opens", t.breaker.opens()}};
    const std::string text = h.dump();
    if (text != t.published && client.Put(HealthKey(cfg.job, id), text).ok()) t.published = text;
  }

  // The next epoch: healthy survivors in rank order, then newcomers.
  auto eligible = [&](const std::string& id) {
    auto it = st.members.find(id);
    return it != st.members.end() && Live(state_of[id]) &&
           it->second.breaker.state() == health::BreakerState::kClosed && it->second.ok_probes > 0;
  };
  std::vector<std::string> next;
  for (const auto& id : job.ranks) {
    if (eligible(id)) next.push_back(id);
  }
  for (const auto& [id, t] : st.members) {
    if (static_cast<int>(next.size()) >= cfg.max) break;
    if (eligible(id) && std::find(next.begin(), next.end(), id) == next.end()) next.push_back(id);
  }
  if (static_cast<int>(next.size()) < cfg.min) return Status::Ok();
  if (next == job.ranks) {
    if (job.epoch == 0) return Status::Ok();
    COHORT_ASSIGN_OR_RETURN(auto reform, client.Get(ReformKey(cfg.job, job.epoch)));
    if (!reform) return Status::Ok();
    COHORT_LOG_INFO("job controller: member {} asked to re-form epoch {}", *reform, job.epoch);
  }
  // A fresh start: the first epoch, or one of a job run again whose previous
  // members are all gone. It waits for `max` members, or for the grace time.
  const bool fresh = job.epoch == 0 || std::none_of(job.ranks.begin(), job.ranks.end(), [&](const std::string& id) {
                       return Live(state_of[id]);
                     });
  if (fresh && static_cast<int>(next.size()) < cfg.max && now - st.config_seen < cfg.join_grace) {
    return Status::Ok();
  }
  COHORT_ASSIGN_OR_RETURN(uint64_t e, client.CommitEpoch(job.epoch, next));
  std::string list;
  for (const auto& id : next) list += (list.empty() ? "" : ",") + id;
  COHORT_LOG_INFO("job controller: epoch {}: {} members [{}]", e, next.size(), list);
  return Status::Ok();
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
      breakers[id] = b == health::BreakerState::kClosed ? 0 : b == health::BreakerState::kHalfOpen ? 1 : 2;
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
