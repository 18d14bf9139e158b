#pragma once
// Counter-based randomness: every random number is a pure function of
// (seed, stream, index), so any rank can produce any sample or weight without
// generating the ones before it, and one seed replays a run exactly.

#include <cmath>
#include <cstdint>

namespace cohort {

// SplitMix64's finaliser: a fast bijective 64-bit mixer.
constexpr uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr uint64_t HashCombine(uint64_t seed, uint64_t stream, uint64_t index) {
  return Mix64(Mix64(seed ^ Mix64(stream)) + index);
}

// Uniform in [0, 1) with 24 random bits.
inline float UniformFloat(uint64_t bits) {
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}
// Uniform in [lo, hi).
inline float UniformFloat(uint64_t bits, float lo, float hi) {
  return lo + (hi - lo) * UniformFloat(bits);
}

// A small sequential generator for shuffles (xoshiro-like quality is not
// needed; SplitMix64 passes BigCrush).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ull;
    return Mix64(state_ - 0x9e3779b97f4a7c15ull);
  }
  // Uniform in [0, n), n > 0 (Lemire's multiply-shift, bias below 2^-32 for our n).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace cohort
