// Runs `cohort bench` (collectives/bench/runner.h) without the rest of the cohort
// tool, so the harness is tested under mpirun on its own. Flags as in
// `cohort bench`: -b -e -f -n -w -c -d -o -r -R --op --backend --json --plot.

#include <cstdio>
#include <cstdlib>
#include <string>

#include "collectives/bench/runner.h"

int main(int argc, char** argv) {
  cohort::bench::BenchCmdOptions o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "-b")
      o.min_bytes = value;
    else if (flag == "-e")
      o.max_bytes = value;
    else if (flag == "-f")
      o.step_factor = std::atof(value.c_str());
    else if (flag == "-n")
      o.iters = std::atoi(value.c_str());
    else if (flag == "-w")
      o.warmup = std::atoi(value.c_str());
    else if (flag == "-c")
      o.check = std::atoi(value.c_str());
    else if (flag == "-d")
      o.dtype = value;
    else if (flag == "-o")
      o.op = value;
    else if (flag == "-r")
      o.root = std::atoi(value.c_str());
    else if (flag == "-R")
      o.registered = std::atoi(value.c_str());
    else if (flag == "--op")
      o.collective = value;
    else if (flag == "--backend")
      o.backends = value;
    else if (flag == "--json")
      o.json = value;
    else if (flag == "--plot")
      o.plot = value;
    else {
      std::fprintf(stderr, "bench_driver: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  return cohort::bench::RunBench(o, &argc, &argv);
}
