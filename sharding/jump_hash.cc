#include "sharding/jump_hash.h"

#include "core/check.h"

namespace cohort::sharding {

int32_t JumpConsistentHash(uint64_t key, int32_t num_buckets) {
  COHORT_CHECK(num_buckets >= 1) << "JumpConsistentHash needs at least one bucket";
  int64_t b = -1;
  int64_t j = 0;
  while (j < num_buckets) {
    b = j;
    key = key * 2862933555777941757ULL + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) * (static_cast<double>(int64_t{1} << 31) /
                                                           static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<int32_t>(b);
}

}  // namespace cohort::sharding
