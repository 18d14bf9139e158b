#pragma once
// Fast, portable 64-bit hashing for placement decisions.
//
// Placement must agree across every worker, compiler and machine of a job, so
// the hashes here are fully specified algorithms (not std::hash, whose values
// differ between standard libraries):
//   - XxHash64: the xxHash64 algorithm (Yann Collet, XXH64 spec), implemented
//     here from the specification. Values equal the reference XXH64() for the
//     same bytes and seed; multi-byte reads are little-endian on every host.
//   - SplitMix64: the splitmix64 finalizer (Steele, Lea, Flood 2014), a cheap
//     bijective 64-bit mixer for combining already-hashed values.
// All functions are pure and thread-safe.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cohort::sharding {

// xxHash64 of `len` bytes at `data` with `seed`. `data` may be null when len==0.
// (Named apart from the string_view overload so that XxHash64("a", 0) cannot
// silently pick a (pointer, length=0) overload.)
uint64_t XxHash64Bytes(const void* data, size_t len, uint64_t seed);

// xxHash64 of the bytes of `bytes` with `seed`.
inline uint64_t XxHash64(std::string_view bytes, uint64_t seed = 0) {
  return XxHash64Bytes(bytes.data(), bytes.size(), seed);
}

// xxHash64 of the 8 little-endian bytes of `value`: equal to
// XxHash64(&le_bytes, 8, seed) but without the byte loop. The hash every
// placement scheme applies to shard keys.
uint64_t XxHash64Word(uint64_t value, uint64_t seed);

// xxHash64 of the 16 little-endian bytes of (a, b): equal to XxHash64 of the
// two words laid out one after the other.
uint64_t XxHash64Pair(uint64_t a, uint64_t b, uint64_t seed);

// splitmix64's output function applied to `x + 0x9E3779B97F4A7C15` (the
// golden-gamma increment), i.e. the first output of a splitmix64 generator
// seeded with `x`. A bijection on 64-bit values.
constexpr uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Maps a 64-bit hash to a double uniformly spread over the open interval
// (0, 1), using the top 52 bits: (x + 0.5) / 2^52 is exact in a double and
// lies in [2^-53, 1 - 2^-53], so it is never 0 or 1 (with 53 bits the top
// value would round to 1.0).
constexpr double HashToUnitOpen(uint64_t h) {
  return (static_cast<double>(h >> 12) + 0.5) * 0x1.0p-52;
}

}  // namespace cohort::sharding
