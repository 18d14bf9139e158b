#pragma once
// Jump consistent hash (John Lamping, Eric Veach: "A Fast, Minimal Memory,
// Consistent Hash Algorithm", 2014).

#include <cstdint>

namespace cohort::sharding {

// The bucket in [0, num_buckets) of `key`, exactly the paper's algorithm
// (64-bit LCG, so the result matches other implementations for the same key).
// Going from n to n+1 buckets moves only keys into the new bucket n, about
// 1/(n+1) of them; going from n+1 to n moves only bucket n's keys. There is no
// clean way to drop any other bucket. Callers should pass a well-mixed key
// (the "jump" placement hashes keys with XxHash64Word first).
// Requires num_buckets >= 1 (COHORT_CHECK). Pure and thread-safe.
int32_t JumpConsistentHash(uint64_t key, int32_t num_buckets);

}  // namespace cohort::sharding
