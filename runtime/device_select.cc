#include "runtime/device_select.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "cohort/config.h"
#include "core/logging.h"
#if COHORT_HAVE_CUDA
#include "core/cuda_device.h"
#endif

namespace cohort {
namespace {

// "a, b or c"
std::string OneOf(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A whole number in [0, kMaxLocalRank], digits only.
bool ParseLocalRank(const char* text, int* out) {
  int64_t v = 0;
  if (*text == '\0') return false;
  for (const char* p = text; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
    if (v > kMaxLocalRank) return false;
  }
  *out = static_cast<int>(v);
  return true;
}

// "rank 3", "ranks 1, 3 and 5", "ranks 0, 1, 2, 3 and 4 more".
std::string NameRanks(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  const size_t named = std::min(ranks.size(), kMaxRanksNamed);
  for (size_t i = 0; i < named; ++i) {
    if (i > 0) out += i + 1 == ranks.size() ? " and " : ", ";
    out += std::to_string(ranks[i]);
  }
  if (ranks.size() > named) out += " and " + std::to_string(ranks.size() - named) + " more";
  return out;
}

Status CheckInput(const PlacementInput& in) {
  if (!Contains(DeviceSettings(), in.device)) {
    return InvalidArgument("unknown device '" + in.device + "' (expected " +
                           OneOf(DeviceSettings()) + ")");
  }
  if (!Contains(PlacementBackends(), in.backend)) {
    return InvalidArgument("unknown backend '" + in.backend + "' (expected " +
                           OneOf(PlacementBackends()) + ")");
  }
  const size_t world = in.gpu_counts.size();
  if (world == 0 || in.local_ranks.size() != world) {
    return InvalidArgument("placement input: " + std::to_string(in.gpu_counts.size()) +
                           " GPU counts and " + std::to_string(in.local_ranks.size()) +
                           " local ranks (need one of each per rank)");
  }
  if (in.rank < 0 || static_cast<size_t>(in.rank) >= world) {
    return InvalidArgument("placement input: rank " + std::to_string(in.rank) +
                           " is outside the world of " + std::to_string(world));
  }
  for (size_t r = 0; r < world; ++r) {
    if (in.gpu_counts[r] < 0 || in.local_ranks[r] < 0) {
      return InvalidArgument("placement input: rank " + std::to_string(r) + " has GPU count " +
                             std::to_string(in.gpu_counts[r]) + " and local rank " +
                             std::to_string(in.local_ranks[r]) + " (both must be >= 0)");
    }
  }
  return Status::Ok();
}

// This rank's device and the warning when it shares it.
void PlaceOnGpu(const PlacementInput& in, Placement* p) {
  const int count = in.gpu_counts[static_cast<size_t>(in.rank)];
  const int local = in.local_ranks[static_cast<size_t>(in.rank)];
  p->device = DeviceKind::kCuda;
  p->cuda_device = local % count;
  if (local >= count) {
    p->warning = "local rank " + std::to_string(local) + " but only " + std::to_string(count) +
                 " CUDA device(s) visible: this rank shares device " +
                 std::to_string(p->cuda_device) + " with local rank " +
                 std::to_string(p->cuda_device) +
                 " (fine only if the launcher gives each rank its own CUDA_VISIBLE_DEVICES)";
  }
}

const char* SystemGetenv(const char* name) { return std::getenv(name); }

}  // namespace

const std::vector<std::string>& LocalRankVariables() {
  static const std::vector<std::string> names = {"COHORT_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                                 "LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
  return names;
}

Result<LocalRankInfo> LocalRankFromEnv(const EnvLookup& getenv) {
  for (const std::string& name : LocalRankVariables()) {
    const char* value = getenv(name.c_str());
    if (value == nullptr) continue;
    LocalRankInfo info;
    if (!ParseLocalRank(value, &info.local_rank)) {
      return InvalidArgument("environment variable " + name + "='" + value +
                             "' is not a local rank (expected a whole number from 0 to " +
                             std::to_string(kMaxLocalRank) + ")");
    }
    info.source = name;
    return info;
  }
  return LocalRankInfo{0, "default"};
}

Result<LocalRankInfo> LocalRankFromEnv() { return LocalRankFromEnv(SystemGetenv); }

namespace {

// A whole number in [lo, kMaxLocalRank]; false for anything else.
bool ParseCount(std::string_view text, int lo, int* out) {
  if (text.empty() || text.size() > 8) return false;
  int v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  if (v < lo || v > kMaxLocalRank) return false;
  *out = v;
  return true;
}

// Entry `node` of Slurm's compressed per-node list "2(x3),1".
bool SlurmListEntry(std::string_view list, int node, int* out) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    int repeat = 1;
    if (const size_t paren = item.find("(x"); paren != std::string_view::npos) {
      if (item.back() != ')' ||
          !ParseCount(item.substr(paren + 2, item.size() - paren - 3), 1, &repeat))
        return false;
      item = item.substr(0, paren);
    }
    int count = 0;
    if (!ParseCount(item, 1, &count)) return false;
    if (node < repeat) {
      *out = count;
      return true;
    }
    node -= repeat;
  }
  return false;  // fewer entries than nodes
}

}  // namespace

Result<HostLayout> HostLayoutFromEnv(const EnvLookup& getenv) {
  HostLayout layout;
  const auto bad = [](const char* name, const char* value, const std::string& expected) {
    return InvalidArgument("environment variable " + std::string(name) + "='" + value +
                           "' is not " + expected);
  };
  if (const char* v = getenv("SLURM_CPUS_PER_TASK"); v != nullptr) {
    if (!ParseCount(v, 1, &layout.cpus_per_rank))
      return bad("SLURM_CPUS_PER_TASK", v, "a CPU count");
  }
  if (const char* v = getenv("COHORT_NPROC"); v != nullptr) {
    if (!ParseCount(v, 1, &layout.local_ranks)) return bad("COHORT_NPROC", v, "a worker count");
    layout.source = "COHORT_NPROC";
    return layout;
  }
  if (const char* v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE"); v != nullptr) {
    if (!ParseCount(v, 1, &layout.local_ranks))
      return bad("OMPI_COMM_WORLD_LOCAL_SIZE", v, "a rank count");
    layout.source = "OMPI_COMM_WORLD_LOCAL_SIZE";
    return layout;
  }
  int node = 0;
  if (const char* v = getenv("SLURM_NODEID"); v != nullptr && !ParseCount(v, 0, &node)) {
    return bad("SLURM_NODEID", v, "a node index");
  }
  for (const char* name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
    const char* v = getenv(name);
    if (v == nullptr) continue;
    if (!SlurmListEntry(v, node, &layout.local_ranks)) {
      return bad(
          name, v,
          "a task list with an entry for node " + std::to_string(node) + " (like \"2(x3),1\")");
    }
    layout.source = name;
    return layout;
  }
  if (const char* v = getenv("SLURM_NTASKS_PER_NODE"); v != nullptr) {
    if (!ParseCount(v, 1, &layout.local_ranks))
      return bad("SLURM_NTASKS_PER_NODE", v, "a task count");
    layout.source = "SLURM_NTASKS_PER_NODE";
    return layout;
  }
  layout.source = "default";
  return layout;
}

Result<HostLayout> HostLayoutFromEnv() { return HostLayoutFromEnv(SystemGetenv); }

int DefaultBlasThreads(const HostLayout& layout, int host_cores) {
  if (layout.cpus_per_rank > 0) return layout.cpus_per_rank;
  return std::max(1, host_cores / std::max(1, layout.local_ranks));
}

int CudaDeviceCount(std::string* why_not) {
#if COHORT_HAVE_CUDA
  return CudaRuntimeDeviceCount(why_not);
#else
  if (why_not)
    *why_not = "this build has no CUDA (configure with a CUDA compiler and COHORT_ENABLE_CUDA=ON)";
  return 0;
#endif
}

std::string_view DeviceKindName(DeviceKind kind) {
  return kind == DeviceKind::kCuda ? "cuda" : "cpu";
}

const std::vector<std::string>& DeviceSettings() {
  static const std::vector<std::string> names = {"cpu", "cuda", "auto"};
  return names;
}

const std::vector<std::string>& PlacementBackends() {
  static const std::vector<std::string> names = {"auto", "mpi", "shm", "gloo", "nccl"};
  return names;
}

Result<Placement> DecidePlacement(const PlacementInput& in) {
  COHORT_RETURN_IF_ERROR(CheckInput(in));
  std::vector<int> without_gpu;
  for (size_t r = 0; r < in.gpu_counts.size(); ++r) {
    if (in.gpu_counts[r] == 0) without_gpu.push_back(static_cast<int>(r));
  }
  const bool host_backend = in.backend != "auto" && in.backend != "nccl";
  Placement p;

  if (in.device == "cpu") {
    if (in.backend == "nccl") {
      return InvalidArgument(
          "backend nccl runs on GPU buffers but device is cpu; use --device cuda (or auto), "
          "or a CPU backend (auto, mpi, shm, gloo)");
    }
    p.backend = in.backend;
    p.reason = "cpu: as set -> cpu + " + in.backend;
    return p;
  }

  if (in.device == "cuda") {
    if (host_backend) {
      return InvalidArgument(
          "backend " + in.backend +
          " runs on host buffers, but with device cuda the trainer's buffers live on the GPU; "
          "use --backend nccl (or auto)");
    }
    if (!in.build_has_cuda) {
      return FailedPrecondition(
          "device cuda: this build has no CUDA (configure with a CUDA compiler and "
          "COHORT_ENABLE_CUDA=ON), or use --device cpu or auto");
    }
    if (!without_gpu.empty()) {
      return FailedPrecondition(
          "device cuda: " + NameRanks(without_gpu) + " of " + std::to_string(in.gpu_counts.size()) +
          (without_gpu.size() == 1 ? " sees" : " see") +
          " no CUDA device (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them); "
          "use --device cpu or auto");
    }
    if (!in.build_has_nccl) {
      return FailedPrecondition(
          "device cuda needs the nccl backend, but this build has no NCCL (configure with "
          "CUDA and NCCL found), or use --device cpu or auto");
    }
    PlaceOnGpu(in, &p);
    p.backend = "nccl";
    p.reason = "cuda: every rank has a GPU -> cuda + nccl";
    return p;
  }

  // auto: the GPU when everything it needs is there, else the CPU.
  std::string no_gpu_because;
  if (!in.build_has_cuda) {
    no_gpu_because = "this build has no CUDA";
  } else if (!without_gpu.empty()) {
    no_gpu_because =
        NameRanks(without_gpu) + (without_gpu.size() == 1 ? " has" : " have") + " no GPU";
  } else if (!in.build_has_nccl) {
    no_gpu_because = "this build has no NCCL";
  } else if (host_backend) {
    no_gpu_because = "backend " + in.backend + " runs on host buffers";
  }
  if (no_gpu_because.empty()) {
    PlaceOnGpu(in, &p);
    p.backend = "nccl";
    p.reason = "auto: every rank has a GPU -> cuda + nccl";
    return p;
  }
  if (in.backend == "nccl") {
    return FailedPrecondition("backend nccl needs a GPU on every rank, but " + no_gpu_because +
                              "; use a CPU backend (auto, mpi, shm, gloo)");
  }
  p.backend = in.backend;
  p.reason = "auto: " + no_gpu_because + " -> cpu";
  return p;
}

Result<Placement> AgreePlacement(Communicator& world, const std::string& device,
                                 const std::string& backend, const EnvLookup& getenv) {
  // Each rank's facts; a bad local-rank variable on one rank fails all.
  auto local = LocalRankFromEnv(getenv);
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(world, local.ok() ? Status::Ok() : local.status())
                             .WithContext("device placement"));
  // With device cpu the counts do not matter: leave the CUDA runtime alone.
  std::string why_not = "device cpu";
  const int count = device == "cpu" ? 0 : CudaDeviceCount(&why_not);
  const int64_t mine[2] = {count, local->local_rank};
  std::vector<int64_t> all(2 * static_cast<size_t>(world.size()));
  COHORT_RETURN_IF_ERROR(world.AllGather(mine, all.data(), 2, DType::kI64));

  PlacementInput in;
  in.device = device;
  in.backend = backend;
  in.build_has_cuda = COHORT_HAVE_CUDA != 0;
  in.build_has_nccl = COHORT_HAVE_NCCL != 0;
  in.rank = world.rank();
  for (int r = 0; r < world.size(); ++r) {
    in.gpu_counts.push_back(static_cast<int>(all[2 * static_cast<size_t>(r)]));
    in.local_ranks.push_back(static_cast<int>(all[2 * static_cast<size_t>(r) + 1]));
  }
  // The same input on every rank but `rank`, which only picks this rank's
  // device: so every rank reaches the same verdict without another round.
  auto placement = DecidePlacement(in);
  if (count == 0 && !placement.ok() &&
      placement.status().code() == StatusCode::kFailedPrecondition) {
    COHORT_LOG_WARN("rank {}: no CUDA device: {}", world.rank(), why_not);
  } else if (count == 0 && COHORT_HAVE_CUDA && device == "auto") {
    COHORT_LOG_INFO("rank {}: no CUDA device: {}", world.rank(), why_not);
  }
  if (placement.ok() && !placement->warning.empty())
    COHORT_LOG_WARN("rank {}: {}", world.rank(), placement->warning);
  return placement;
}

Result<Placement> AgreePlacement(Communicator& world, const std::string& device,
                                 const std::string& backend) {
  return AgreePlacement(world, device, backend, SystemGetenv);
}

}  // namespace cohort
