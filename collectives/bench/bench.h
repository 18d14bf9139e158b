#pragma once
// The collective benchmark behind `cohort bench`, after nccl-tests: one
// harness serves every collective (CONTRIBUTING.md, "Benchmarks"). Each collective supplies its
// buffer sizes for a message size, its seeded input, its expected output and
// its bus-bandwidth factor; the harness owns warm-up, timing, the in-place and
// out-of-place runs and checking every element of every result.
//
// Units: sizes in bytes, counts in elements, times in microseconds,
// bandwidths in GB/s (1e9 bytes per second).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "collectives/communicator.h"

namespace cohort::bench {

enum class Collective : uint8_t {
  kAllReduce,
  kReduceScatter,
  kAllGather,
  kBroadcast,
  kReduce,
  kAllToAll
};
std::string_view CollectiveName(Collective c);  // allreduce, reducescatter, ...
Result<Collective> ParseCollective(std::string_view name);

// Bounds on what one run may ask for (CONTRIBUTING.md, "Limits").
inline constexpr size_t kMaxBenchBytes = size_t{4} << 30;  // per buffer
inline constexpr int kMaxBenchIters = 1000000;

struct BenchOptions {
  Collective collective = Collective::kAllReduce;
  int iters = 20;           // timed iterations per row (-n)
  int warmup = 5;           // untimed iterations before them (-w)
  bool check = true;        // run once more on fresh input and count wrong elements (-c)
  int root = 0;             // broadcast / reduce root (-r)
  bool registered = false;  // buffers from Communicator::AllocateRegistered (-R)
};

struct Row {
  std::string backend;
  Collective collective = Collective::kAllReduce;
  size_t size_bytes = 0;  // as nccl-tests: the whole message (all blocks for *gather/*scatter)
  size_t count = 0;       // elements per rank's block (nccl-tests' "count")
  DType dtype = DType::kF32;
  bool has_redop = false;
  ReduceOp redop = ReduceOp::kSum;
  int root = -1;  // -1 for collectives without a root
  bool in_place = false;
  double time_us = 0;  // mean per iteration; the slowest rank's
  double algbw = 0;    // size_bytes / time
  double busbw = 0;    // algbw * the collective's bus factor
  int64_t wrong = -1;  // elements that differ from the expected result, all ranks; -1 unchecked
};

// The message sizes of a sweep: min, min*factor, ... <= max (nccl-tests -b -e -f).
std::vector<size_t> SweepSizes(size_t min_bytes, size_t max_bytes, double factor);

// Buffers for one backend, sized for the largest message; owned here (heap or
// registered with `comm`, which must outlive this).
class BenchBuffers {
 public:
  // Collective on registered backends: every rank calls it with the same sizes.
  static Result<std::unique_ptr<BenchBuffers>> Allocate(Communicator& comm, size_t max_bytes,
                                                        Collective c, bool registered);
  ~BenchBuffers();
  char* send() { return send_; }
  char* recv() { return recv_; }

 private:
  explicit BenchBuffers(Communicator& comm) : comm_(comm) {}
  Communicator& comm_;
  bool registered_ = false;
  std::vector<char> send_heap_, recv_heap_;
  char* send_ = nullptr;
  char* recv_ = nullptr;
};

// Measures one message size on `comm`, out of place then in place, and
// returns the two rows (identical on every rank). `control` carries the
// reductions of times and error counts (it may be `comm` itself; a separate
// MPI communicator keeps a broken backend from hiding its own errors).
// Collective over both communicators.
Result<std::vector<Row>> MeasureSize(Communicator& comm, Communicator& control,
                                     BenchBuffers& buffers, const BenchOptions& options,
                                     size_t size_bytes, DType dtype, ReduceOp op);

}  // namespace cohort::bench
