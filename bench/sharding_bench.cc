// Placement lookup throughput per scheme, for 8, 64 and 1024 members.
//
//   BM_Lookup/<scheme>/<members>: Placement::Owner on successive keys
//     (items/s = lookups/s). "bounded" has no single-key lookup, so
//   BM_Assign/<scheme>/<members>: a full Assign of 100k shards (items/s =
//     shards placed per second); run for every scheme to compare.
//   BM_Build/<scheme>/<members>: MakePlacement (ring construction dominates).
//   BM_XxHash64Word: the key hash all schemes apply.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "core/check.h"
#include "sharding/hash.h"
#include "sharding/placement.h"

namespace cohort::sharding {
namespace {

constexpr int64_t kAssignShards = 100000;

std::unique_ptr<Placement> MakeOrDie(const std::string& scheme, int64_t members) {
  auto p = MakePlacement(scheme, MakeMembers(members));
  if (!p.ok()) {
    // Benchmarks have no Status channel: a failure here is a bug in the bench.
    COHORT_CHECK(false) << p.status().ToString();
  }
  return std::move(p).value();
}

void BM_Lookup(benchmark::State& state, const std::string& scheme) {
  auto p = MakeOrDie(scheme, state.range(0));
  uint64_t key = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p->Owner(key++));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Assign(benchmark::State& state, const std::string& scheme) {
  auto p = MakeOrDie(scheme, state.range(0));
  for (auto _ : state) {
    auto owners = p->Assign(kAssignShards);
    benchmark::DoNotOptimize(owners);
  }
  state.SetItemsProcessed(state.iterations() * kAssignShards);
}

void BM_Build(benchmark::State& state, const std::string& scheme) {
  for (auto _ : state) {
    auto p = MakePlacement(scheme, MakeMembers(state.range(0)));
    benchmark::DoNotOptimize(p);
  }
}

void BM_XxHash64Word(benchmark::State& state) {
  uint64_t key = 0;
  for (auto _ : state) benchmark::DoNotOptimize(XxHash64Word(key++, 1));
  state.SetItemsProcessed(state.iterations());
}

#define COHORT_MEMBER_ARGS Arg(8)->Arg(64)->Arg(1024)

BENCHMARK_CAPTURE(BM_Lookup, ring, std::string("ring"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Lookup, jump, std::string("jump"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Lookup, rendezvous, std::string("rendezvous"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Assign, ring, std::string("ring"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Assign, bounded, std::string("bounded"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Assign, jump, std::string("jump"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Assign, rendezvous, std::string("rendezvous"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Build, ring, std::string("ring"))->COHORT_MEMBER_ARGS;
BENCHMARK_CAPTURE(BM_Build, rendezvous, std::string("rendezvous"))->COHORT_MEMBER_ARGS;
BENCHMARK(BM_XxHash64Word);

}  // namespace
}  // namespace cohort::sharding

BENCHMARK_MAIN();
