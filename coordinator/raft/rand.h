#pragma once
// A small deterministic PRNG (SplitMix64). The Raft core draws its randomised
// election timeouts from one, seeded through Config, and the simulator derives
// every fault from one, so a seed replays a whole run. Not thread-safe; not
// for cryptography.

#include <cstdint>

namespace cohort::coordinator::raft {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0.
  uint64_t Uniform(uint64_t n) { return Next() % n; }
  // True with probability p (0 <= p <= 1).
  bool Chance(double p) { return (Next() >> 11) * (1.0 / 9007199254740992.0) < p; }
  double Unit() { return (Next() >> 11) * (1.0 / 9007199254740992.0); }

 private:
  uint64_t state_;
};

}  // namespace cohort::coordinator::raft
