// CPU kernel throughput on one core (run with OPENBLAS_NUM_THREADS=1).
//
//   BM_GeluForward / BM_GeluBackward: the GPT's MLP activation over a
//     2048 x 1536 activation (B*T = 2048 rows of 4C = 1536), out of place.
//     items/s = elements/s; ns per element = 1e9 / items_per_second.
//
// Inputs are seeded normal(0, 2) values, the range a GPT's pre-activations
// take, so every branch of the kernels' math is exercised.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/transformer.h"

namespace cohort::kernels {
namespace {

constexpr int64_t kGptActivation = 2048 * 1536;

std::vector<float> Normal(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = dist(rng);
  return v;
}

void BM_GeluForward(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto x = Normal(n, 1);
  std::vector<float> y(static_cast<size_t>(n));
  for (auto _ : state) {
    GeluForward(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_GeluBackward(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto x = Normal(n, 2), dy = Normal(n, 3);
  std::vector<float> dx(static_cast<size_t>(n));
  for (auto _ : state) {
    GeluBackward(x.data(), dy.data(), dx.data(), n);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(BM_GeluForward)->Arg(kGptActivation)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GeluBackward)->Arg(kGptActivation)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cohort::kernels

BENCHMARK_MAIN();
