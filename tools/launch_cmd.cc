// `cohort launch`: the elastic agent of one host. It starts N local workers
// (each runs CMD with the environment of tools/elastic.h), and, without
// --coordinator, an embedded one-node coordinator. Several launchers (on
// several hosts, or twice on one) given the same --coordinator form one job:
// the first writes the job's parameters (coordinator::JobConfig) under
// coordinator::kJobConfigKey with CAS; a later one with different values is
// refused; one that arrives while the job runs adds its workers (the world
// grows up to --max). Member ids are "<host>-<launcher pid>-w<slot>[.r<n>]",
// unique across hosts.
//
// Epochs are decided by the job controller in the coordinator's leader
// (coordinator/controller): it probes each worker's health server and keeps
// a circuit breaker per worker. The launcher is the fast path for deaths it
// can see:
//  - a child that exits or is killed is seen at once (waitpid, polled every
//    kLoopInterval) and marked failed, so the next epoch leaves it out;
//  - a child the controller evicted (hung: SIGSTOP, or cut off) is left
//    alone: once it answers again it joins again and is taken back at a
//    later epoch. Only a worker still evicted --hung-kill-ms later is killed
//    (SIGKILL) and handled as a dead child.
// A dead worker is restarted (a new member id) up to --max-restarts times in
// all and joins a later epoch. The launcher fails when fewer than --min
// workers are alive in the job and it has no restart left.
//
// Output: the workers' progress (rank 0 of each epoch) on stdout, the
// launcher's events on stderr, and as the last stdout line one JSON object:
// the final rank 0's summary plus the launcher's fields.

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
#include <set>
#include <thread>

#include "coordinator/client/client.h"
#include "coordinator/controller/job_controller.h"
#include "coordinator/server/embedded.h"
#include "coordinator/server/node.h"
#include "core/logging.h"
#include "tools/commands.h"
#include "tools/elastic.h"
#include "tools/metrics_cmd.h"

namespace cohort::tools {
namespace {

using Ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr Ms kLoopInterval{10};     // waitpid polling: the kill -9 detection granularity
constexpr Ms kJobPollInterval{50};  // registry reads (joins, heartbeats)
constexpr Ms kFinishGrace{30000};     // after the first worker finished, how long the rest may take
constexpr Ms kEarlyDetection{1000};  // how much earlier than the launcher a worker may see a failure

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
  explicit Launcher(const LaunchOptions& o) : o_(o) {}
  ~Launcher();
  int Run();

 private:
  Status Start();
  Status Spawn(Slot& s);
  void Reap();
  Status Tick();
  void KillAll(int sig);
  bool AnyRunning() const;
  int Finish();
  // `replace`: a restarted job takes this launcher's parameters.
  Status PublishJobConfig(bool replace);

  const LaunchOptions& o_;
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
    return FailedPrecondition("the job on coordinator " + coordinator_ +
                              " was started with other parameters (this launcher vs the job: " +
                              diff + "); give the same --min/--max/health flags as the first launcher");
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
    std::fprintf(stderr, "cohort launch: job '%s' in %s finished at epoch %llu; running it again from there\n",
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
  if (o_.metrics_port != kMetricsOff) {  // slot i serves P + i (checked in RunLaunch); 0: any free port
    env.push_back(std::string(kEnvMetricsPort) + "=" +
                  std::to_string(o_.metrics_port == 0 ? 0 : o_.metrics_port + s.index));
    env.push_back(std::string(kEnvMetricsAddress) + "=" + o_.metrics_address);
  }
  // One host, an embedded coordinator on loopback: workers advertise
  // loopback too, unless told otherwise.
  if (embedded_ && std::getenv(kEnvAdvertiseHost) == nullptr) {
    env.push_back(std::string(kEnvAdvertiseHost) + "=127.0.0.1");
  }
  std::vector<char*> argv;
  for (const auto& a : o_.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    for (auto& e : env) ::putenv(e.data());
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "cohort launch: error: cannot run %s: %s\n", argv[0],
                 std::strerror(errno));
    ::_exit(127);
  }
  s.pid = pid;
  return Status::Ok();
}

bool Launcher::AnyRunning() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.pid > 0; });
}

void Launcher::KillAll(int sig) {
  for (auto& s : slots_) {
    if (s.pid > 0) ::kill(s.pid, sig);
  }
}

void Launcher::Reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    auto it =
        std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.pid == pid; });
    if (it == slots_.end()) continue;
    Slot& s = *it;
    s.pid = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      s.finished = true;
      if (!finishing_) {
        finishing_ = true;
        finish_at_ = SteadyClock::now();
        (void)client_->Put(DoneKey(o_.job), "1");
      }
      continue;
    }
    if (finishing_ || stopping_signal_ != 0 || !failed_.empty()) continue;
    const std::string cause = "worker " + s.member + " (pid " + std::to_string(pid) + ") " +
                              (s.evicted.empty() ? DescribeExit(status) : s.evicted);
    failures_.push_back({cause, WallMs()});
    if (!client_->MarkFailed(s.member, epoch_).ok()) {  // a stale epoch: once more
      if (auto job = client_->GetJob(); job.ok()) {
        epoch_ = job->epoch;
        (void)client_->MarkFailed(s.member, epoch_);
      }
    }
    if (restarts_ < o_.max_restarts) {
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
  // Evictions by the coordinator's job controller of workers still alive here.
  for (auto& s : slots_) {
    if (s.pid <= 0 || !s.evicted.empty() || finishing_) continue;
    auto it = members.find(s.member);
    if (it == members.end()) continue;
    const bool failed = it->second->state == coordinator::MemberState::kFailed;
    if (failed && !s.evicted_since) {
      s.evicted_since = now;
      std::string why;
      if (auto h = client_->Get(coordinator::HealthKey(o_.job, s.member)); h.ok() && *h) {
        auto j = nlohmann::json::parse(**h, nullptr, false);
        if (!j.is_discarded()) why = j.value("reason", "");
      }
      const std::string cause = "worker " + s.member + " (pid " + std::to_string(s.pid) +
                                ") evicted by the coordinator: " + (why.empty() ? "unhealthy" : why);
      failures_.push_back({cause, WallMs()});
      std::fprintf(stderr, "cohort launch: %s; it may join again once it answers\n", cause.c_str());
    } else if (!failed && s.evicted_since) {
      std::fprintf(stderr, "cohort launch: worker %s answers again (%s)\n", s.member.c_str(),
                   coordinator::MemberStateName(it->second->state));
      s.evicted_since.reset();
    }
    if (s.evicted_since && o_.hung_kill_ms > 0 && now - *s.evicted_since > Ms(o_.hung_kill_ms)) {
      s.evicted = "still evicted " + std::to_string(o_.hung_kill_ms) +
                  " ms later (--hung-kill-ms); killed by the launcher";
      ::kill(s.pid, SIGKILL);
    }
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
  if (running + elsewhere < o_.min && restarts_ >= o_.max_restarts) {
    failed_ = std::to_string(running + elsewhere) + " worker(s) alive in the job (" +
              std::to_string(running) + " here), fewer than --min " + std::to_string(o_.min) +
              ", and no restart left (--max-restarts " + std::to_string(o_.max_restarts) + ")";
  }
  return Status::Ok();
}

int Launcher::Finish() {
  // The summary of the final epoch's rank 0 (the newest epoch, then the lowest rank).
  std::optional<nlohmann::json> best;
  for (const auto& s : slots_) {
    if (!s.finished) continue;
    std::ifstream f(s.summary_file);
    std::string line;
    if (!std::getline(f, line)) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (!best || j.value("epoch", 0) > best->value("epoch", 0) ||
        (j.value("epoch", 0) == best->value("epoch", 0) &&
         j.value("rank", 0) < best->value("rank", 0))) {
      best = j;
    }
  }
  nlohmann::json out = best ? *best : nlohmann::json::object();
  auto job = client_->GetJob();
  out["epochs"] = job.ok() ? job->epoch : epoch_;
  out["restarts"] = restarts_;
  out["nproc"] = o_.nproc;
  out["min"] = o_.min;
  out["max"] = o_.max;
  // One recovery per failure: from when the launcher saw it to the first
  // step the final rank 0 completed after it.
  // One recovery per failure: from when the launcher saw it to the first step
  // completed in a later epoch (ResumedKey, written by each epoch's rank 0:
  // whichever worker survived). Detection: the earliest a worker or the
  // launcher saw it.
  std::map<uint64_t, int64_t> resumed;  // epoch -> wall ms of its first step
  if (auto w = client_->Watch(coordinator::ResumedPrefix(o_.job), true, 0, Ms(1000)); w.ok()) {
    const std::string prefix = coordinator::ResumedPrefix(o_.job);
    for (const auto& ev : w->events) {
      if (ev.deleted || ev.key.size() <= prefix.size()) continue;
      resumed[std::strtoull(ev.key.c_str() + prefix.size(), nullptr, 10)] = std::strtoll(ev.value.c_str(), nullptr, 10);
    }
  }
  nlohmann::json rec = nlohmann::json::array();
  nlohmann::json worker_rec =
      best ? best->value("recoveries", nlohmann::json::array()) : nlohmann::json::array();
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
        // A survivor's collective can fail before waitpid sees the death.
        if (d > previous_failure && d > f.at_ms - kEarlyDetection.count() && d < detected) detected = d;
      }
      r["resumed_at_ms"] = first->second;
      r["detected_at_ms"] = detected;
      r["seconds"] = static_cast<double>(first->second - f.at_ms) / 1e3;
      r["epoch"] = first->first;
    }
    previous_failure = f.at_ms;
    rec.push_back(r);
  }
  out["recoveries"] = rec;
  out["worker_recoveries"] = worker_rec;
  int code = 0;
  if (stopping_signal_ != 0) {
    out["error"] = std::string("stopped by signal ") + strsignal(stopping_signal_);
    code = 128 + stopping_signal_;
  } else if (!failed_.empty()) {
    out["error"] = failed_;
    std::fprintf(stderr, "cohort launch: error: %s\n", failed_.c_str());
    code = 1;
  } else if (!best) {
    out["error"] = "no worker finished the job";
    std::fprintf(stderr, "cohort launch: error: no worker finished the job\n");
    code = 1;
  }
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  return code;
}

int Launcher::Run() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  if (Status st = Start(); !st.ok()) {
    std::fprintf(stderr, "cohort launch: error: %s\n", st.message().c_str());
    return 1;
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

}  // namespace

int RunLaunch(const LaunchOptions& options) {
  LaunchOptions o = options;
  if (o.min < 0) o.min = o.nproc;
  if (o.max < 0) o.max = o.nproc;
  InitLogging("launch", ParseLogLevel(o.log_level, LogLevel::kWarn));
  auto usage = [](const std::string& m) {
    std::fprintf(stderr, "cohort launch: error: %s\n", m.c_str());
    return 2;
  };
  if (o.command.empty()) {
    return usage(
        "no command to run: give it after --, e.g. cohort launch --nproc 4 -- cohort train "
        "--config "
        "examples/mlp.yaml");
  }
  if (o.nproc < 1) return usage("--nproc must be at least 1 (got " + std::to_string(o.nproc) + ")");
  if (o.min < 1 || o.min > o.nproc) {
    return usage("--min " + std::to_string(o.min) + " must be between 1 and --nproc " +
                 std::to_string(o.nproc));
  }
  if (o.max < o.nproc) {
    return usage("--max " + std::to_string(o.max) + " must be at least --nproc " +
                 std::to_string(o.nproc));
  }
  if (o.max_restarts < 0) return usage("--max-restarts must not be negative");
  if (o.collective_timeout_ms < 100) return usage("--collective-timeout-ms must be at least 100");
  if (o.snapshot_every < 1) return usage("--snapshot-every must be at least 1");
  if (o.metrics_port != kMetricsOff) {
    auto last = SlotMetricsPort(o.metrics_port, o.nproc - 1);  // the highest slot's port
    if (!last.ok()) return usage(last.status().message());
  }
  if (o.probe_interval_ms < coordinator::kMinProbeInterval.count() ||
      o.probe_interval_ms > coordinator::kMaxProbeInterval.count()) {
    return usage("--probe-interval-ms must be in [" +
                 std::to_string(coordinator::kMinProbeInterval.count()) + ", " +
                 std::to_string(coordinator::kMaxProbeInterval.count()) + "]");
  }
  if (o.probe_deadline_ms < 1 || o.probe_deadline_ms > coordinator::kMaxProbeInterval.count())
    return usage("--probe-deadline-ms must be in [1, " +
                 std::to_string(coordinator::kMaxProbeInterval.count()) + "]");
  if (o.failure_threshold < 1) return usage("--failure-threshold must be at least 1");
  if (!(o.phi_threshold > 0)) return usage("--phi-threshold must be positive");
  if (o.cooldown_ms < 1 || o.cooldown_ms > coordinator::kMaxCooldown.count())
    return usage("--cooldown-ms must be in [1, " +
                 std::to_string(coordinator::kMaxCooldown.count()) + "]");
  if (o.health_pause_ms < 0) return usage("--health-pause-ms must not be negative");
  if (o.hung_kill_ms < 0) return usage("--hung-kill-ms must not be negative");
  if (Status v = coordinator::ValidateJobConfig(ConfigOf(o)); !v.ok()) return usage("job config: " + v.message());
  Launcher l(o);
  return l.Run();
}

}  // namespace cohort::tools
