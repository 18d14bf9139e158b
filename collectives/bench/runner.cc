#include "collectives/bench/runner.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "collectives/auto/auto_cache.h"
#include "collectives/backends.h"
#include "collectives/bench/bench.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/shm/reduce_kernels.h"
#include "collectives/shm/shm_communicator.h"
#include "core/logging.h"

namespace cohort::bench {
namespace {

using bench::Row;

Result<size_t> ParseBytes(const std::string& text, const char* flag) {
  size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &pos);
  } catch (...) {
    return InvalidArgument(std::string(flag) + " '" + text +
                           "' is not a size (e.g. 8, 64K, 32M, 1G)");
  }
  size_t mult = 1;
  if (pos < text.size()) {
    switch (text[pos]) {
      case 'K':
      case 'k':
        mult = size_t{1} << 10;
        break;
      case 'M':
      case 'm':
        mult = size_t{1} << 20;
        break;
      case 'G':
      case 'g':
        mult = size_t{1} << 30;
        break;
      default:
        return InvalidArgument(std::string(flag) + " '" + text + "': unknown suffix (K, M or G)");
    }
    if (pos + 1 != text.size())
      return InvalidArgument(std::string(flag) + " '" + text + "': trailing text");
  }
  return static_cast<size_t>(v) * mult;
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

struct Plan {
  bench::BenchOptions options;
  std::vector<size_t> sizes;
  std::vector<DType> dtypes;
  std::vector<ReduceOp> ops;
  std::vector<std::string> backends;
};

Result<Plan> MakePlan(const BenchCmdOptions& o) {
  Plan p;
  COHORT_ASSIGN_OR_RETURN(p.options.collective, bench::ParseCollective(o.collective));
  COHORT_ASSIGN_OR_RETURN(size_t min_bytes, ParseBytes(o.min_bytes, "-b"));
  COHORT_ASSIGN_OR_RETURN(size_t max_bytes, ParseBytes(o.max_bytes, "-e"));
  if (min_bytes == 0 || max_bytes < min_bytes || max_bytes > bench::kMaxBenchBytes) {
    return InvalidArgument("need 0 < -b <= -e <= 4G");
  }
  if (!(o.step_factor >= 1.0)) return InvalidArgument("-f must be >= 1");
  p.sizes = bench::SweepSizes(min_bytes, max_bytes, o.step_factor);
  p.options.iters = o.iters;
  p.options.warmup = o.warmup;
  if (o.iters < 1 || o.iters > bench::kMaxBenchIters || o.warmup < 0 ||
      o.warmup > bench::kMaxBenchIters) {
    return InvalidArgument("-n must be in [1, 1000000] and -w in [0, 1000000]");
  }
  p.options.check = o.check != 0;
  p.options.root = o.root;
  p.options.registered = o.registered != 0;
  if (o.dtype == "all") {
    p.dtypes.assign(std::begin(kAllDTypes), std::end(kAllDTypes));
  } else {
    COHORT_ASSIGN_OR_RETURN(DType t, ParseDType(o.dtype));
    p.dtypes.push_back(t);
  }
  const bool has_redop = p.options.collective == bench::Collective::kAllReduce ||
                         p.options.collective == bench::Collective::kReduceScatter ||
                         p.options.collective == bench::Collective::kReduce;
  if (!has_redop) {
    p.ops = {ReduceOp::kSum};
  } else if (o.op == "all") {
    p.ops.assign(std::begin(kAllReduceOps), std::end(kAllReduceOps));
  } else {
    COHORT_ASSIGN_OR_RETURN(ReduceOp op, ParseReduceOp(o.op));
    p.ops.push_back(op);
  }
  p.backends = SplitCommas(o.backends);
  if (p.backends.empty())
    return InvalidArgument("--backend needs at least one name (mpi, shm, gloo, auto)");
  for (const std::string& b : p.backends) {
    if (Status known = CheckBackendName(b); !known.ok()) {
      return InvalidArgument("--backend: " + known.message());
    }
    if (b == "nccl") {
      // The harness fills and checks host buffers; NCCL needs device pointers.
      return InvalidArgument(
          "--backend nccl: cohort bench measures host buffers and nccl needs GPU buffers; "
          "use mpi, shm, gloo or auto");
    }
  }
  return p;
}

std::string TimeText(double us) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), us < 10000 ? "%8.2f" : "%8.1f", us);
  return buf;
}

void PrintHeader(const Plan& p, int ranks) {
  std::printf("# cohort bench: %s, %d rank%s, backends",
              std::string(bench::CollectiveName(p.options.collective)).c_str(), ranks,
              ranks == 1 ? "" : "s");
  for (const auto& b : p.backends) std::printf(" %s", b.c_str());
  std::printf(
      "\n#  iters %d, warm-up %d, check %d, %s buffers, shm kernels %s; time is the slowest rank's "
      "mean\n",
      p.options.iters, p.options.warmup, p.options.check ? 1 : 0,
      p.options.registered ? "registered" : "plain", std::string(shm::ReduceKernelIsa()).c_str());
  std::printf("#\n");
  std::printf("# %7s %12s %12s %8s %6s %6s  %s  %s\n", "", "", "", "", "", "",
              "              out-of-place           ", "              in-place           ");
  std::printf("# %7s %12s %12s %8s %6s %6s  %8s %7s %7s %6s  %8s %7s %7s %6s\n", "backend", "size",
              "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw",
              "busbw", "#wrong");
  std::printf("# %7s %12s %12s %8s %6s %6s  %8s %7s %7s %6s  %8s %7s %7s %6s\n", "", "(B)",
              "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)",
              "");
  std::fflush(stdout);
}

std::string WrongText(int64_t w) { return w < 0 ? "N/A" : std::to_string(w); }

void PrintRows(const Row& out, const Row& in) {
  std::printf("  %7s %12zu %12zu %8s %6s %6d  %s %7.2f %7.2f %6s  %s %7.2f %7.2f %6s\n",
              out.backend.c_str(), out.size_bytes, out.count,
              std::string(DTypeName(out.dtype)).c_str(),
              out.has_redop ? std::string(ReduceOpName(out.redop)).c_str() : "none", out.root,
              TimeText(out.time_us).c_str(), out.algbw, out.busbw, WrongText(out.wrong).c_str(),
              TimeText(in.time_us).c_str(), in.algbw, in.busbw, WrongText(in.wrong).c_str());
  std::fflush(stdout);
}

Status WriteJson(const std::string& path, const std::vector<Row>& rows) {
  nlohmann::json list = nlohmann::json::array();
  for (const Row& r : rows) {
    list.push_back({{"backend", r.backend},
                    {"op", std::string(bench::CollectiveName(r.collective))},
                    {"size", r.size_bytes},
                    {"count", r.count},
                    {"type", std::string(DTypeName(r.dtype))},
                    {"redop", r.has_redop ? std::string(ReduceOpName(r.redop)) : "none"},
                    {"root", r.root},
                    {"inplace", r.in_place},
                    {"time_us", r.time_us},
                    {"algbw", r.algbw},
                    {"busbw", r.busbw},
                    {"wrong", r.wrong}});
  }
  std::ofstream f(path);
  f << list.dump(1) << "\n";
  f.close();
  if (!f) return IoError("cannot write " + path);
  return Status::Ok();
}

// bench/plot_bench.py from the source tree (found from this file's path at
// build time), or $COHORT_PLOT_SCRIPT.
std::string PlotScript() {
  if (const char* env = std::getenv("COHORT_PLOT_SCRIPT")) return env;
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "bench" / "plot_bench.py")
      .string();
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

int Run(const BenchCmdOptions& o) {
  auto fail = [](const Status& s, bool lead) {
    if (lead) std::fprintf(stderr, "cohort bench: error: %s\n", s.ToString().c_str());
    return 2;
  };
  auto control_or = MpiCommunicator::World();
  if (!control_or.ok()) return fail(control_or.status(), true);
  std::unique_ptr<MpiCommunicator> control = std::move(control_or).value();
  const bool lead = control->rank() == 0;
  auto plan_or = MakePlan(o);
  if (!plan_or.ok()) return fail(plan_or.status(), lead);
  const Plan& plan = *plan_or;

  // One communicator and one set of buffers per backend.
  std::vector<Communicator*> comms;
  std::vector<std::unique_ptr<bench::BenchBuffers>> buffers;
  size_t max_bytes = 0;
  for (size_t s : plan.sizes) max_bytes = std::max(max_bytes, s);
  // Each backend runs over its own duplicate of the MPI world, so that the
  // control communicator's traffic never mixes with the measured one.
  std::vector<std::unique_ptr<MpiCommunicator>> groups;
  BackendOptions bo;
  bo.autos.cache_dir =
      DefaultCacheDir();  // auto's calibration cache (collectives/auto/auto_cache.h)
  bo.autos.recalibrate = o.recalibrate;
  BackendSet made(*control, bo);
  for (const std::string& name : plan.backends) {
    auto g = MpiCommunicator::World();
    if (!g.ok()) return fail(g.status(), lead);
    groups.push_back(std::move(g).value());
    auto c = made.Make(name, *groups.back(), "bench-" + name);
    if (!c.ok()) return fail(c.status(), lead);
    Communicator* comm = *c;
    if (lead && name == "auto") {
      std::printf(
          "# auto backend: measured choice per operation and size (time: the slowest rank's "
          "fastest run)\n");
      std::string table = static_cast<AutoCommunicator*>(comm)->DescribeTable();
      size_t at = 0;
      while (at < table.size()) {
        size_t nl = table.find('\n', at);
        std::printf("#   %s\n", table.substr(at, nl - at).c_str());
        at = nl == std::string::npos ? table.size() : nl + 1;
      }
    }
    auto b = bench::BenchBuffers::Allocate(*comm, max_bytes, plan.options.collective,
                                           plan.options.registered);
    Status agreed = AgreeOnStatus(*control, b.status());
    if (!agreed.ok()) return fail(agreed, lead);
    comms.push_back(comm);
    buffers.push_back(std::move(b).value());
  }

  if (lead) PrintHeader(plan, control->size());
  std::vector<Row> rows;
  int64_t wrong_total = 0;
  for (DType t : plan.dtypes) {
    for (ReduceOp op : plan.ops) {
      for (size_t size : plan.sizes) {
        // Backends interleaved per size, so a noisy moment hurts them alike.
        for (size_t b = 0; b < comms.size(); ++b) {
          auto measured =
              bench::MeasureSize(*comms[b], *control, *buffers[b], plan.options, size, t, op);
          if (!measured.ok()) return fail(measured.status().WithContext(plan.backends[b]), lead);
          if (lead) PrintRows((*measured)[0], (*measured)[1]);
          for (const Row& r : *measured) {
            wrong_total += std::max<int64_t>(0, r.wrong);
            rows.push_back(r);
          }
        }
      }
    }
  }
  buffers.clear();  // collective frees before the communicators go

  int rc = wrong_total > 0 ? 1 : 0;
  if (lead) {
    std::printf("# Out of bounds values : %lld %s\n", static_cast<long long>(wrong_total),
                wrong_total == 0 ? "OK" : "FAILED");
    for (const std::string& b : plan.backends) {
      double sum = 0;
      int n = 0;
      for (const Row& r : rows) {
        if (r.backend == b) {
          sum += r.busbw;
          ++n;
        }
      }
      std::printf("# Avg bus bandwidth (%s) : %g\n", b.c_str(), n > 0 ? sum / n : 0.0);
    }
    std::printf("#\n");
    std::fflush(stdout);
    std::string json_path = o.json;
    if (json_path.empty() && !o.plot.empty()) json_path = o.plot + ".json";
    if (!json_path.empty()) {
      Status s = WriteJson(json_path, rows);
      if (!s.ok()) {
        std::fprintf(stderr, "cohort bench: error: %s\n", s.ToString().c_str());
        rc = 2;
      }
    }
    if (!o.plot.empty() && rc != 2) {
      const std::string cmd = "/usr/bin/python3 " + ShellQuote(PlotScript()) + " " +
                              ShellQuote(json_path) + " " + ShellQuote(o.plot);
      if (std::system(cmd.c_str()) != 0) {
        std::fprintf(stderr,
                     "cohort bench: error: the plot failed (%s); it needs Debian's "
                     "python3-matplotlib (scripts/setup installs it)\n",
                     cmd.c_str());
        rc = 3;
      }
    }
  }
  int agreed_rc = 0;
  (void)control->AllReduce(&rc, &agreed_rc, 1, DType::kI32, ReduceOp::kMax);
  comms.clear();
  return agreed_rc;
}

}  // namespace

int RunBench(const BenchCmdOptions& options, int* argc, char*** argv) {
  // Warnings only: the table is the output (auto's measurements print as
  // '#' lines of it, once).
  InitLogging("bench", LogLevel::kWarn);
  Status init = MpiRuntime::Init(argc, argv);
  if (!init.ok()) {
    std::fprintf(stderr, "cohort bench: error: %s\n", init.ToString().c_str());
    return 2;
  }
  int rc = Run(options);
  MpiRuntime::Finalize();
  return rc;
}

}  // namespace cohort::bench
