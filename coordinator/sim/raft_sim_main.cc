// raft_sim: runs the deterministic Raft simulator over a range of seeds.
//
//   raft_sim --seed-start S --seeds N [--nodes 3|5] [--steps K] [--verbose]
//
// Exits 0 with a one-line summary when every seed passes; on a violation it
// prints the seed, what was violated and the command that replays it, and
// exits 1. A COHORT_CHECK inside the core aborts; the handler below still
// names the seed.

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "coordinator/sim/simulator.h"

namespace {

volatile std::sig_atomic_t g_seed_valid = 0;
char g_seed_text[64];

void OnAbort(int sig) {
  if (g_seed_valid) {
    const char prefix[] = "raft_sim: aborted while running seed ";
    ssize_t unused = ::write(2, prefix, sizeof(prefix) - 1);
    unused = ::write(2, g_seed_text, std::strlen(g_seed_text));
    unused = ::write(2, "\n", 1);
    (void)unused;
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "raft_sim: %s\nusage: raft_sim --seed-start S --seeds N [--nodes 3|5] [--steps K] "
               "[--liveness-ticks T] [--verbose]\n",
               why);
  return 2;
}

bool ParseU64(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed_start = 1, seeds = 100, nodes = 3, steps = 1000, liveness = 400;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](uint64_t* out) {
      if (i + 1 >= argc || !ParseU64(argv[i + 1], out)) return false;
      ++i;
      return true;
    };
    bool ok = true;
    if (a == "--seed-start")
      ok = value(&seed_start);
    else if (a == "--seeds")
      ok = value(&seeds);
    else if (a == "--nodes")
      ok = value(&nodes);
    else if (a == "--steps")
      ok = value(&steps);
    else if (a == "--liveness-ticks")
      ok = value(&liveness);
    else if (a == "--verbose")
      verbose = true;
    else
      return Usage(("unknown flag " + a).c_str());
    if (!ok) return Usage(("flag " + a + " needs a non-negative integer").c_str());
  }
  if (nodes != 3 && nodes != 5) return Usage("--nodes must be 3 or 5");
  if (steps < 1 || steps > 10'000'000) return Usage("--steps must be in [1, 10000000]");
  if (liveness < 50 || liveness > 1'000'000)
    return Usage("--liveness-ticks must be in [50, 1000000]");
  std::signal(SIGABRT, OnAbort);

  cohort::coordinator::SimStats total;
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t s = seed_start; s < seed_start + seeds; ++s) {
    std::snprintf(g_seed_text, sizeof(g_seed_text), "%llu", static_cast<unsigned long long>(s));
    g_seed_valid = 1;
    cohort::coordinator::SimOptions opt;
    opt.seed = s;
    opt.nodes = static_cast<int>(nodes);
    opt.steps = static_cast<int>(steps);
    opt.liveness_ticks = static_cast<int>(liveness);
    opt.verbose = verbose;
    cohort::coordinator::SimResult r = cohort::coordinator::RunSimulation(opt);
    total.Add(r.stats);
    if (!r.ok) {
      std::fprintf(stderr,
                   "raft_sim: FAILED seed %llu\n%s\nreplay: raft_sim --seed-start %llu --seeds 1 "
                   "--nodes %llu --steps %llu --verbose\n",
                   static_cast<unsigned long long>(s), r.failure.c_str(),
                   static_cast<unsigned long long>(s), static_cast<unsigned long long>(nodes),
                   static_cast<unsigned long long>(steps));
      return 1;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "raft_sim: %llu seeds ok (seeds %llu..%llu, %llu nodes): %llu steps, %llu elections, %llu "
      "commits, "
      "%llu client ops (%llu reads), %llu faults (%llu drops, %llu dups, %llu partitions, %llu "
      "crashes, %llu torn writes, %llu torn tails recovered), "
      "%llu snapshots, %llu installs, %llu conf changes, %llu transfers; %.2f s, %.0f seeds/min\n",
      (unsigned long long)seeds, (unsigned long long)seed_start,
      (unsigned long long)(seed_start + seeds - 1), (unsigned long long)nodes,
      (unsigned long long)total.steps, (unsigned long long)total.elections,
      (unsigned long long)total.commits, (unsigned long long)total.client_ops,
      (unsigned long long)total.reads, (unsigned long long)total.faults,
      (unsigned long long)total.drops, (unsigned long long)total.duplicates,
      (unsigned long long)total.partitions, (unsigned long long)total.crashes,
      (unsigned long long)total.torn_crashes, (unsigned long long)total.torn_tails_recovered,
      (unsigned long long)total.snapshots, (unsigned long long)total.snapshot_installs,
      (unsigned long long)total.conf_changes, (unsigned long long)total.transfers, secs,
      secs > 0 ? seeds * 60.0 / secs : 0.0);
  return 0;
}
