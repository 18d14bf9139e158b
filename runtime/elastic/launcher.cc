// The launcher of runtime/elastic/launcher.h.

#include "runtime/elastic/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "coordinator/client/client.h"
#include "coordinator/client/flags.h"
#include "coordinator/controller/job_controller.h"
#include "coordinator/server/embedded.h"
#include "core/clock.h"
#include "core/logging.h"
#include "runtime/elastic/env.h"
#include "runtime/elastic/launch_policy.h"
#include "runtime/worker_metrics.h"

namespace cohort::elastic {
namespace {

using Ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr Ms kLoopInterval{10};     // waitpid polling: the kill -9 detection granularity
constexpr Ms kJobPollInterval{50};  // registry reads (joins, heartbeats)
constexpr Ms kFinishGrace{30000};   // after the first worker finished, how long the rest may take
constexpr Ms kEarlyDetection{
    1000};  // how much earlier than the launcher a worker may see a failure

std::atomic<int> g_signal{0};
void OnSignal(int signo) { g_signal.store(signo); }

struct Slot {
  int index = 0;
  int incarnation = 0;
  pid_t pid = -1;  // -1: not running
  std::string member;
  std::string summary_file;
  bool finished = false;  // exited 0
  std::string evicted;    // why the launcher killed it (unresponsive after eviction), if it did
  // When the launcher saw the coordinator evict this live worker; unset
  // while it is a member in good standing.
  std::optional<SteadyClock::time_point> evicted_since;
};

struct Failure {
  std::string cause;
  int64_t at_ms = 0;  // wall clock when the launcher noticed
};

Result<std::string> RandomToken() {
  std::ifstream f("/dev/urandom", std::ios::binary);
  unsigned char b[16];
  if (!f.read(reinterpret_cast<char*>(b), sizeof(b)))
    return IoError("cannot read /dev/urandom for a token");
  std::string hex;
  char buf[3];
  for (unsigned char c : b) {
    std::snprintf(buf, sizeof(buf), "%02x", c);
    hex += buf;
  }
  return hex;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

class Launcher {
 public:
  Launcher(const LaunchOptions& o, ProcessSpawner& spawner) : o_(o), spawner_(spawner) {}
  ~Launcher();
  LaunchResult Run();

 private:
  Status Start();
  Status Spawn(Slot& s);
  void Reap();
  Status Tick();
  void KillAll(int sig);
  bool AnyRunning() const;
  LaunchResult Finish();
  void OnExit(Slot& s, int pid, int status);
  void CheckEviction(Slot& s, const coordinator::MemberInfo& m, SteadyClock::time_point now);
  nlohmann::json Recoveries(const nlohmann::json& worker_rec);
  // `replace`: a restarted job takes this launcher's parameters.
  Status PublishJobConfig(bool replace);

  const LaunchOptions& o_;
  ProcessSpawner& spawner_;
  std::string launcher_id_;  // "<host>-<pid>": the prefix of this launcher's member ids
  std::string tmp_dir_;
  std::string coordinator_, token_file_;
  std::unique_ptr<coordinator::EmbeddedCoordinator> embedded_;
  std::unique_ptr<coordinator::Client> client_;
  std::vector<Slot> slots_;
  std::vector<Failure> failures_;
  int restarts_ = 0;
  bool finishing_ = false;
  SteadyClock::time_point start_, finish_at_{}, next_poll_{};
  int stopping_signal_ = 0;
  std::string failed_;  // the job failed: why
  uint64_t epoch_ = 0;
  uint64_t printed_epoch_ = 0;  // the last epoch announced on stderr
};

coordinator::JobConfig ConfigOf(const LaunchOptions& o) {
  coordinator::JobConfig c;
  c.job = o.job;
  c.min = o.min;
  c.max = o.max;
  c.join_grace = Ms(o.join_grace_ms);
  c.probe_interval = Ms(o.probe_interval_ms);
  c.probe_deadline = Ms(o.probe_deadline_ms);
  c.failure_threshold = o.failure_threshold;
  c.phi_threshold = o.phi_threshold;
  c.health_pause = Ms(o.health_pause_ms);
  c.cooldown = Ms(o.cooldown_ms);
  return c;
}

// The first launcher writes the job's parameters; a later one must agree.
Status Launcher::PublishJobConfig(bool replace) {
  const coordinator::JobConfig mine = ConfigOf(o_);
  if (replace) {
    auto put = client_->Put(coordinator::kJobConfigKey, mine.ToJson());
    return put.ok() ? Status::Ok() : put.status().WithContext("writing the job config");
  }
  auto cas = client_->Cas(coordinator::kJobConfigKey, std::nullopt, mine.ToJson());
  if (!cas.ok()) return cas.status().WithContext("writing the job config");
  if (cas->swapped) return Status::Ok();
  auto theirs = coordinator::JobConfig::FromJson(cas->previous.value_or(""));
  if (!theirs.ok()) return theirs.status();
  const std::string diff = mine.Diff(*theirs);
  if (!diff.empty()) {
    return FailedPrecondition(
        "the job on coordinator " + coordinator_ +
        " was started with other parameters (this launcher vs the job: " + diff +
        "); give the same --min/--max/health flags as the first launcher");
  }
  return Status::Ok();
}

Launcher::~Launcher() {
  KillAll(SIGKILL);
  while (AnyRunning()) Reap();
  client_.reset();
  if (embedded_) embedded_->Stop();
  if (!tmp_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_dir_, ec);
  }
}

Status Launcher::Start() {
  char tmpl[] = "/tmp/cohort-launch.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return IoError(std::string("mkdtemp: ") + std::strerror(errno));
  tmp_dir_ = tmpl;
  std::string token;
  if (o_.coordinator.empty()) {
    COHORT_ASSIGN_OR_RETURN(token, RandomToken());
    token_file_ = tmp_dir_ + "/token";
    {
      const int fd = ::open(token_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0) return IoError("cannot write " + token_file_ + ": " + std::strerror(errno));
      const std::string line = token + "\n";
      const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
      ::close(fd);
      if (!ok) return IoError("cannot write " + token_file_);
    }
    coordinator::EmbeddedOptions eo;
    eo.data_dir = o_.data_dir.empty() ? tmp_dir_ + "/coordinator" : o_.data_dir;
    eo.token = token;
    COHORT_ASSIGN_OR_RETURN(embedded_, coordinator::EmbeddedCoordinator::Start(eo));
    coordinator_ = embedded_->address();
  } else {
    if (o_.token_file.empty()) return InvalidArgument("--coordinator needs --token-file");
    coordinator_ = o_.coordinator;
    token_file_ = std::filesystem::absolute(o_.token_file).string();
    COHORT_ASSIGN_OR_RETURN(token, coordinator::ReadTokenFile(token_file_));
  }
  coordinator::ClientOptions co;
  COHORT_ASSIGN_OR_RETURN(co.endpoints, coordinator::ParseEndpoints(coordinator_));
  co.token = token;
  co.deadline = Ms(10000);
  COHORT_ASSIGN_OR_RETURN(client_, coordinator::Client::Create(co));
  COHORT_ASSIGN_OR_RETURN(auto job, client_->GetJob());  // the coordinator answers
  epoch_ = job.epoch;
  COHORT_ASSIGN_OR_RETURN(auto done, client_->Get(DoneKey(o_.job)));
  bool restart = false;
  if (done && !embedded_) {
    return FailedPrecondition("job '" + o_.job + "' on coordinator " + coordinator_ +
                              " has finished (at epoch " + std::to_string(epoch_) +
                              "); start a fresh coordinator (or data dir), or use another --job");
  }
  if (done) {
    // The embedded coordinator's --data-dir of a finished job: this launcher
    // is its only one, so it runs the job again from what the coordinator
    // holds (its committed checkpoints). The previous run's members are gone.
    restart = true;
    std::fprintf(
        stderr,
        "cohort launch: job '%s' in %s finished at epoch %llu; running it again from there\n",
        o_.job.c_str(), o_.data_dir.c_str(), static_cast<unsigned long long>(epoch_));
    for (const auto& m : job.members) {
      if (coordinator::IsLive(m.state)) (void)client_->MarkFailed(m.id, epoch_);
    }
    auto cleared = client_->Delete(DoneKey(o_.job));
    if (!cleared.ok()) return cleared.status().WithContext("clearing the finished mark");
  }
  COHORT_RETURN_IF_ERROR(PublishJobConfig(restart));
  {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    launcher_id_ = std::string(host) + "-" + std::to_string(::getpid());
  }
  start_ = SteadyClock::now();
  slots_.resize(static_cast<size_t>(o_.nproc));
  for (int i = 0; i < o_.nproc; ++i) {
    Slot& s = slots_[static_cast<size_t>(i)];
    s.index = i;
    COHORT_RETURN_IF_ERROR(Spawn(s));
  }
  return Status::Ok();
}

Status Launcher::Spawn(Slot& s) {
  s.member = launcher_id_ + "-w" + std::to_string(s.index) +
             (s.incarnation > 0 ? ".r" + std::to_string(s.incarnation) : "");
  s.summary_file = tmp_dir_ + "/summary-" + s.member + ".json";
  s.finished = false;
  s.evicted.clear();
  s.evicted_since.reset();
  std::vector<std::string> env = {
      std::string(kEnvCoordinator) + "=" + coordinator_,
      std::string(kEnvTokenFile) + "=" + token_file_,
      std::string(kEnvJobId) + "=" + o_.job,
      std::string(kEnvWorkerId) + "=" + s.member,
      std::string(kEnvLocalRank) + "=" + std::to_string(s.index),
      std::string(kEnvNproc) + "=" + std::to_string(o_.nproc),
      std::string(kEnvSummaryFile) + "=" + s.summary_file,
      std::string(kEnvCollectiveTimeoutMs) + "=" + std::to_string(o_.collective_timeout_ms),
      std::string(kEnvSnapshotEvery) + "=" + std::to_string(o_.snapshot_every),
  };
  if (o_.metrics_port !=
      kMetricsOff) {  // slot i serves P + i (checked in RunLaunch); 0: any free port
    env.push_back(std::string(kEnvMetricsPort) + "=" +
                  std::to_string(o_.metrics_port == 0 ? 0 : o_.metrics_port + s.index));
    env.push_back(std::string(kEnvMetricsAddress) + "=" + o_.metrics_address);
  }
  // One host, an embedded coordinator on loopback: workers advertise
  // loopback too, unless told otherwise.
  if (embedded_ && std::getenv(kEnvAdvertiseHost) == nullptr) {
    env.push_back(std::string(kEnvAdvertiseHost) + "=127.0.0.1");
  }
  COHORT_ASSIGN_OR_RETURN(s.pid, spawner_.Spawn(o_.command, env));
  return Status::Ok();
}

bool Launcher::AnyRunning() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pid > 0; });
}

void Launcher::KillAll(int sig) {
  for (auto& s : slots_) {
    if (s.pid > 0) spawner_.Signal(s.pid, sig);
  }
}

void Launcher::Reap() {
  while (auto ended = spawner_.Reap()) {
    auto it = std::find_if(slots_.begin(), slots_.end(),
                           [&](const Slot& s) { return s.pid == ended->first; });
    if (it != slots_.end()) OnExit(*it, ended->first, ended->second);
  }
}

void Launcher::OnExit(Slot& s, int pid, int status) {
  s.pid = -1;
  ExitFacts f;
  f.exited_zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  f.job_finishing = finishing_;
  f.stopping = stopping_signal_ != 0;
  f.failed = !failed_.empty();
  f.restarts = restarts_;
  f.max_restarts = o_.max_restarts;
  const ExitAction action = DecideOnExit(f);
  if (action == ExitAction::kFinished) {
    s.finished = true;
    if (!finishing_) {
      finishing_ = true;
      finish_at_ = SteadyClock::now();
      (void)client_->Put(DoneKey(o_.job), "1");
    }
    return;
  }
  if (action == ExitAction::kIgnore) return;
  const std::string cause = "worker " + s.member + " (pid " + std::to_string(pid) + ") " +
                            (s.evicted.empty() ? DescribeExit(status) : s.evicted);
  failures_.push_back({cause, WallClockMs()});
  if (!client_->MarkFailed(s.member, epoch_).ok()) {  // a stale epoch: once more
    if (auto job = client_->GetJob(); job.ok()) {
      epoch_ = job->epoch;
      (void)client_->MarkFailed(s.member, epoch_);
    }
  }
  if (action == ExitAction::kRestart) {
    ++restarts_;
    ++s.incarnation;
    std::fprintf(stderr, "cohort launch: %s; restarting it (restart %d of %d)\n", cause.c_str(),
                 restarts_, o_.max_restarts);
    Status sp = Spawn(s);
    if (!sp.ok()) failed_ = sp.message();
  } else {
    std::fprintf(stderr, "cohort launch: %s; no restart left\n", cause.c_str());
  }
  next_poll_ = {};  // commit the next epoch now
}

// Evictions by the coordinator's job controller of a worker still alive here.
void Launcher::CheckEviction(Slot& s, const coordinator::MemberInfo& m,
                             SteadyClock::time_point now) {
  EvictionFacts f;
  f.failed_in_registry = m.state == coordinator::MemberState::kFailed;
  f.evicted_since = s.evicted_since;
  f.now = now;
  f.hung_kill = Ms(o_.hung_kill_ms);
  switch (DecideOnEviction(f)) {
    case EvictionAction::kNone:
      return;
    case EvictionAction::kEvicted: {
      s.evicted_since = now;
      std::string why;
      if (auto h = client_->Get(coordinator::HealthKey(o_.job, s.member)); h.ok() && *h) {
        auto j = nlohmann::json::parse(**h, nullptr, false);
        if (!j.is_discarded()) why = j.value("reason", "");
      }
      const std::string cause =
          "worker " + s.member + " (pid " + std::to_string(s.pid) +
          ") evicted by the coordinator: " + (why.empty() ? "unhealthy" : why);
      failures_.push_back({cause, WallClockMs()});
      std::fprintf(stderr, "cohort launch: %s; it may join again once it answers\n", cause.c_str());
      return;
    }
    case EvictionAction::kAnswersAgain:
      std::fprintf(stderr, "cohort launch: worker %s answers again (%s)\n", s.member.c_str(),
                   coordinator::MemberStateName(m.state));
      s.evicted_since.reset();
      return;
    case EvictionAction::kKill:
      s.evicted = "still evicted " + std::to_string(o_.hung_kill_ms) +
                  " ms later (--hung-kill-ms); killed by the launcher";
      spawner_.Signal(s.pid, SIGKILL);
      return;
  }
}

Status Launcher::Tick() {
  const auto now = SteadyClock::now();
  if (now < next_poll_) return Status::Ok();
  next_poll_ = now + kJobPollInterval;
  COHORT_ASSIGN_OR_RETURN(auto job, client_->GetJob());
  epoch_ = job.epoch;
  if (job.epoch != printed_epoch_ && !job.ranks.empty()) {
    printed_epoch_ = job.epoch;
    std::string list;
    for (const auto& id : job.ranks) list += (list.empty() ? "" : ",") + id;
    std::fprintf(stderr, "cohort launch: epoch %llu: %zu worker%s [%s]\n",
                 static_cast<unsigned long long>(job.epoch), job.ranks.size(),
                 job.ranks.size() == 1 ? "" : "s", list.c_str());
  }
  std::map<std::string, const coordinator::MemberInfo*> members;
  for (const auto& m : job.members) members[m.id] = &m;
  for (auto& s : slots_) {
    if (s.pid <= 0 || !s.evicted.empty() || finishing_) continue;
    auto it = members.find(s.member);
    if (it != members.end()) CheckEviction(s, *it->second, now);
  }
  if (finishing_) return Status::Ok();
  // Fewer than --min alive in the whole job and no restart left: give up.
  const std::string mine = launcher_id_ + "-";
  int running = 0;
  for (const auto& s : slots_) running += s.pid > 0 ? 1 : 0;
  int elsewhere = 0;
  for (const auto& m : job.members) {
    if (coordinator::IsLive(m.state) && m.id.rfind(mine, 0) != 0) ++elsewhere;
  }
  if (auto why = GiveUpReason(running, elsewhere, o_.min, restarts_, o_.max_restarts))
    failed_ = *why;
  return Status::Ok();
}

// One recovery per failure: from when the launcher saw it to the first step
// completed in a later epoch (ResumedKey, written by each epoch's rank 0:
// whichever worker survived). Detection: the earliest a worker or the
// launcher saw it.
nlohmann::json Launcher::Recoveries(const nlohmann::json& worker_rec) {
  std::map<uint64_t, int64_t> resumed;  // epoch -> wall ms of its first step
  if (auto w = client_->Watch(coordinator::ResumedPrefix(o_.job), true, 0, Ms(1000)); w.ok()) {
    const std::string prefix = coordinator::ResumedPrefix(o_.job);
    for (const auto& ev : w->events) {
      if (ev.deleted || ev.key.size() <= prefix.size()) continue;
      resumed[std::strtoull(ev.key.c_str() + prefix.size(), nullptr, 10)] =
          std::strtoll(ev.value.c_str(), nullptr, 10);
    }
  }
  nlohmann::json rec = nlohmann::json::array();
  int64_t previous_failure = 0;
  for (const auto& f : failures_) {
    nlohmann::json r = {{"cause", f.cause}, {"failed_at_ms", f.at_ms}};
    std::optional<std::pair<uint64_t, int64_t>> first;  // epoch, resumed ms
    for (const auto& [epoch, at] : resumed) {
      if (at >= f.at_ms && (!first || at < first->second)) first = std::make_pair(epoch, at);
    }
    if (first) {
      int64_t detected = f.at_ms;
      for (const auto& w : worker_rec) {
        const int64_t d = w.value("detected_at_ms", f.at_ms);
        // A survivor's collective can fail before the launcher reaps the death.
        if (d > previous_failure && d > f.at_ms - kEarlyDetection.count() && d < detected)
          detected = d;
      }
      r["resumed_at_ms"] = first->second;
      r["detected_at_ms"] = detected;
      r["seconds"] = static_cast<double>(first->second - f.at_ms) / 1e3;
      r["epoch"] = first->first;
    }
    previous_failure = f.at_ms;
    rec.push_back(r);
  }
  return rec;
}

LaunchResult Launcher::Finish() {
  // The summary of the final epoch's rank 0 (the newest epoch, then the lowest rank).
  std::optional<nlohmann::json> best;
  for (const auto& s : slots_) {
    if (!s.finished) continue;
    std::ifstream f(s.summary_file);
    std::string line;
    if (!std::getline(f, line)) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch")) continue;
    if (!best || j.value("epoch", 0) > best->value("epoch", 0) ||
        (j.value("epoch", 0) == best->value("epoch", 0) &&
         j.value("rank", 0) < best->value("rank", 0))) {
      best = j;
    }
  }
  LaunchResult result;
  nlohmann::json& out = result.summary;
  out = best ? *best : nlohmann::json::object();
  auto job = client_->GetJob();
  out["epochs"] = job.ok() ? job->epoch : epoch_;
  out["restarts"] = restarts_;
  out["nproc"] = o_.nproc;
  out["min"] = o_.min;
  out["max"] = o_.max;
  const nlohmann::json worker_rec =
      best ? best->value("recoveries", nlohmann::json::array()) : nlohmann::json::array();
  out["recoveries"] = Recoveries(worker_rec);
  out["worker_recoveries"] = worker_rec;
  if (stopping_signal_ != 0) {
    out["error"] = std::string("stopped by signal ") + strsignal(stopping_signal_);
    result.exit_code = 128 + stopping_signal_;
  } else if (!failed_.empty()) {
    out["error"] = failed_;
    std::fprintf(stderr, "cohort launch: error: %s\n", failed_.c_str());
    result.exit_code = 1;
  } else if (!best) {
    out["error"] = "no worker finished the job";
    std::fprintf(stderr, "cohort launch: error: no worker finished the job\n");
    result.exit_code = 1;
  }
  return result;
}

LaunchResult Launcher::Run() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  if (Status st = Start(); !st.ok()) {
    std::fprintf(stderr, "cohort launch: error: %s\n", st.message().c_str());
    return {1, nlohmann::json::object()};
  }
  std::fprintf(stderr, "cohort launch: %d workers (min %d, max %d), coordinator %s%s\n", o_.nproc,
               o_.min, o_.max, coordinator_.c_str(), embedded_ ? " (embedded)" : "");
  while (AnyRunning()) {
    if (const int sig = g_signal.exchange(0); sig != 0) {
      if (stopping_signal_ == 0)
        std::fprintf(stderr, "cohort launch: %s: stopping the workers\n", strsignal(sig));
      stopping_signal_ = sig;
      KillAll(sig);
    }
    Reap();
    if (stopping_signal_ == 0 && failed_.empty()) {
      if (Status st = Tick(); !st.ok()) COHORT_LOG_WARN("coordinator: {}", st.message());
    }
    if (!failed_.empty()) KillAll(SIGKILL);
    if (finishing_ && SteadyClock::now() - finish_at_ > kFinishGrace) {
      std::fprintf(
          stderr,
          "cohort launch: workers still running %lld s after the job finished; killing them\n",
          static_cast<long long>(kFinishGrace.count() / 1000));
      KillAll(SIGKILL);
    }
    std::this_thread::sleep_for(kLoopInterval);
  }
  return Finish();
}

// fork/exec; the child dies with the launcher (PR_SET_PDEATHSIG).
class ForkSpawnerImpl final : public ProcessSpawner {
 public:
  Result<int> Spawn(const std::vector<std::string>& command,
                    const std::vector<std::string>& env) override {
    std::vector<std::string> vars = env;  // putenv keeps pointers into these until exec
    std::vector<char*> argv;
    for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      for (auto& e : vars) ::putenv(e.data());
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "cohort launch: error: cannot run %s: %s\n", argv[0],
                   std::strerror(errno));
      ::_exit(127);
    }
    return static_cast<int>(pid);
  }
  void Signal(int pid, int sig) override { ::kill(pid, sig); }
  std::optional<std::pair<int, int>> Reap() override {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return std::nullopt;
    return std::make_pair(static_cast<int>(pid), status);
  }
};

}  // namespace

std::unique_ptr<ProcessSpawner> ForkSpawner() { return std::make_unique<ForkSpawnerImpl>(); }

LaunchResult RunLauncher(const LaunchOptions& o, ProcessSpawner& spawner) {
  Launcher l(o, spawner);
  return l.Run();
}

Status CheckLaunchOptions(LaunchOptions* po) {
  LaunchOptions& o = *po;
  if (o.min < 0) o.min = o.nproc;
  if (o.max < 0) o.max = o.nproc;
  if (o.command.empty()) {
    return InvalidArgument(
        "no command to run: give it after --, e.g. cohort launch --nproc 4 -- cohort train "
        "--config "
        "examples/mlp.yaml");
  }
  if (o.nproc < 1)
    return InvalidArgument("--nproc must be at least 1 (got " + std::to_string(o.nproc) + ")");
  if (o.min < 1 || o.min > o.nproc) {
    return InvalidArgument("--min " + std::to_string(o.min) + " must be between 1 and --nproc " +
                           std::to_string(o.nproc));
  }
  if (o.max < o.nproc) {
    return InvalidArgument("--max " + std::to_string(o.max) + " must be at least --nproc " +
                           std::to_string(o.nproc));
  }
  if (o.max_restarts < 0) return InvalidArgument("--max-restarts must not be negative");
  if (o.collective_timeout_ms < 100)
    return InvalidArgument("--collective-timeout-ms must be at least 100");
  if (o.snapshot_every < 1) return InvalidArgument("--snapshot-every must be at least 1");
  if (o.metrics_port != kMetricsOff) {
    COHORT_RETURN_IF_ERROR(
        SlotMetricsPort(o.metrics_port, o.nproc - 1).status());  // the highest slot's port
  }
  if (o.probe_interval_ms < coordinator::kMinProbeInterval.count() ||
      o.probe_interval_ms > coordinator::kMaxProbeInterval.count()) {
    return InvalidArgument("--probe-interval-ms must be in [" +
                           std::to_string(coordinator::kMinProbeInterval.count()) + ", " +
                           std::to_string(coordinator::kMaxProbeInterval.count()) + "]");
  }
  if (o.probe_deadline_ms < 1 || o.probe_deadline_ms > coordinator::kMaxProbeInterval.count())
    return InvalidArgument("--probe-deadline-ms must be in [1, " +
                           std::to_string(coordinator::kMaxProbeInterval.count()) + "]");
  if (o.failure_threshold < 1) return InvalidArgument("--failure-threshold must be at least 1");
  if (!(o.phi_threshold > 0)) return InvalidArgument("--phi-threshold must be positive");
  if (o.cooldown_ms < 1 || o.cooldown_ms > coordinator::kMaxCooldown.count())
    return InvalidArgument("--cooldown-ms must be in [1, " +
                           std::to_string(coordinator::kMaxCooldown.count()) + "]");
  if (o.health_pause_ms < 0) return InvalidArgument("--health-pause-ms must not be negative");
  if (o.hung_kill_ms < 0) return InvalidArgument("--hung-kill-ms must not be negative");
  if (Status v = coordinator::ValidateJobConfig(ConfigOf(o)); !v.ok()) {
    return InvalidArgument("job config: " + v.message());
  }
  return Status::Ok();
}

}  // namespace cohort::elastic
