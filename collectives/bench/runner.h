#pragma once
// The runner behind `cohort bench`: the collective benchmark with the
// nccl-tests interface, over the harness of collectives/bench/bench.h.
//
// Under mpirun every rank runs it; only rank 0 prints. The flags are parsed
// in tools/main.cc, which fills the options struct and calls RunBench.

#include <string>

namespace cohort::bench {

struct BenchCmdOptions {
  std::string min_bytes = "8";           // -b: smallest message, with K/M/G suffixes (x1024)
  std::string max_bytes = "32M";         // -e: largest message
  double step_factor = 2;                // -f: multiply the size by this each step
  int iters = 20;                        // -n: timed iterations per size
  int warmup = 5;                        // -w: warm-up iterations per size
  int check = 1;                         // -c: 1 checks every element of every result
  std::string dtype = "float";           // -d: float, double, half, bfloat16, int32, int64, or all
  std::string op = "sum";                // -o: sum, avg, max, min, prod, or all
  int root = 0;                          // -r: root of broadcast / reduce
  int registered = 0;                    // -R: 1 uses Communicator::AllocateRegistered buffers
  std::string collective = "allreduce";  // --op
  std::string backends = "mpi";          // --backend NAME[,NAME...]: mpi, shm
  std::string json;                      // --json FILE: every row as a JSON list
  std::string plot;                      // --plot FILE.png: busbw against size per backend
  bool recalibrate = false;  // --recalibrate: measure auto's table again (not from the cache)
};

// Runs the benchmark (initialises and finalises MPI). Returns 0 when every
// result was right, 1 when some element was wrong, 2 on bad options or a
// failed collective, 3 when the plot could not be drawn.
int RunBench(const BenchCmdOptions& options, int* argc, char*** argv);

}  // namespace cohort::bench
