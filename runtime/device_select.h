#pragma once
// Device placement: which device each rank trains on (CPU or one CUDA
// device) and which backend its groups then use.
//
// Three layers, so that the rules are testable without a GPU:
//  - LocalRankFromEnv / CudaDeviceCount: what this process knows on its own
//    (its slot on its host, the devices it sees);
//  - DecidePlacement: a pure function from every rank's facts to one
//    decision, the same on every rank given the same input;
//  - AgreePlacement: gathers the facts over the world and decides, so every
//    rank gets the same decision or the same error.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "collectives/communicator.h"
#include "core/status.h"

namespace cohort {

// The environment variables that give a process its local rank (its slot on
// its host), in the order they are read: the first one set wins, the others
// are not looked at.
//   COHORT_LOCAL_RANK           cohort launch
//   OMPI_COMM_WORLD_LOCAL_RANK  Open MPI's mpirun
//   LOCAL_RANK                  torchrun
//   MPI_LOCALRANKID             MPICH / Hydra
//   SLURM_LOCALID               srun
const std::vector<std::string>& LocalRankVariables();

// Local ranks above this are taken as a malformed value (no host runs more
// processes of one job than this).
inline constexpr int kMaxLocalRank = 1 << 20;

struct LocalRankInfo {
  int local_rank = 0;  // >= 0
  std::string source;  // the variable it came from, or "default" (none set: 0)
};

// A lookup of one environment variable: nullptr when unset. std::getenv in
// production; a map in tests.
using EnvLookup = std::function<const char*(const char*)>;

// This process's local rank from the first variable of LocalRankVariables()
// that is set; none set: 0 from "default". A set value that is not a whole
// number in [0, kMaxLocalRank] (empty, "abc", "1x", "-1") is InvalidArgument
// naming the variable and the value.
Result<LocalRankInfo> LocalRankFromEnv(const EnvLookup& getenv);
Result<LocalRankInfo> LocalRankFromEnv();  // std::getenv

// How many ranks of this job share this host, and how many CPUs the
// scheduler gave each, from the launcher's environment. Read in this order,
// the first one set wins:
//   COHORT_NPROC                cohort launch's workers on this host
//                               (runtime/elastic/env.h)
//   OMPI_COMM_WORLD_LOCAL_SIZE  Open MPI's mpirun (also inside a Slurm job)
//   SLURM_STEP_TASKS_PER_NODE   srun: the step's layout, a compressed list
//                               ("2(x3),1": 2 tasks on each of 3 nodes, then
//                               1) indexed by SLURM_NODEID (default 0)
//   SLURM_TASKS_PER_NODE        the same list for the whole allocation
//   SLURM_NTASKS_PER_NODE       sbatch/srun --ntasks-per-node N
// and, for the CPUs, SLURM_CPUS_PER_TASK (srun/sbatch -c N; 0 when unset).
// None set: one rank. A malformed value is InvalidArgument naming the
// variable.
struct HostLayout {
  int local_ranks = 1;    // >= 1
  int cpus_per_rank = 0;  // 0: not given; split the host's cores instead
  std::string source;     // the variable local_ranks came from, or "default"
};
Result<HostLayout> HostLayoutFromEnv(const EnvLookup& getenv);
Result<HostLayout> HostLayoutFromEnv();  // std::getenv

// BLAS threads per rank: the CPUs Slurm gave each task when it says, else
// the host's cores divided among the ranks on it; at least 1.
int DefaultBlasThreads(const HostLayout& layout, int host_cores);

// The CUDA devices this process sees. 0, with the reason in *why_not (may be
// null), when the build has no CUDA (COHORT_HAVE_CUDA) or the CUDA runtime
// reports none or fails (no driver, no device, bad CUDA_VISIBLE_DEVICES).
int CudaDeviceCount(std::string* why_not);

enum class DeviceKind { kCpu, kCuda };
std::string_view DeviceKindName(DeviceKind kind);  // "cpu" | "cuda"

// The settings DecidePlacement accepts, for help texts and errors.
const std::vector<std::string>& DeviceSettings();     // {"cpu", "cuda", "auto"}
const std::vector<std::string>& PlacementBackends();  // {"auto", "mpi", "shm", "gloo", "nccl"}

// Everything the decision depends on. gpu_counts and local_ranks are indexed
// by world rank and have one entry per rank.
struct PlacementInput {
  std::string device = "auto";   // DeviceSettings()
  std::string backend = "auto";  // PlacementBackends()
  bool build_has_cuda = false;   // COHORT_HAVE_CUDA of the build (the same binary on every rank)
  bool build_has_nccl = false;   // COHORT_HAVE_NCCL
  std::vector<int> gpu_counts;   // CudaDeviceCount of each rank, >= 0
  std::vector<int> local_ranks;  // LocalRankFromEnv of each rank, >= 0
  int rank = 0;                  // this rank, in [0, gpu_counts.size())
};

struct Placement {
  DeviceKind device = DeviceKind::kCpu;
  // kCuda: the CUDA device of this rank, local_rank % gpu_counts[rank]; kCpu: -1.
  int cuda_device = -1;
  // What to pass to BackendSet::Make: "nccl" for kCuda with backend auto;
  // otherwise the backend setting unchanged ("auto" stays the CPU auto).
  std::string backend;
  // One line for humans, the same on every rank, e.g.
  // "auto: every rank has a GPU -> cuda + nccl" or "auto: rank 3 has no GPU -> cpu".
  std::string reason;
  // Non-empty when this rank's local rank is >= its GPU count, so that it
  // shares its device with a lower local rank (harmless when the launcher
  // gives each rank its own CUDA_VISIBLE_DEVICES). Differs between ranks.
  std::string warning;
};

// How many ranks an error names before "and N more".
inline constexpr size_t kMaxRanksNamed = 4;

// The rules (in this order):
//  - unknown device or backend: InvalidArgument listing the accepted values;
//    malformed vectors or rank: InvalidArgument;
//  - device cpu: backend nccl is InvalidArgument; else cpu with the backend
//    unchanged;
//  - device cuda: mpi/shm/gloo are InvalidArgument (the buffers live on the
//    GPU); a build without CUDA, or any rank without a GPU, is
//    FailedPrecondition naming the ranks; backend auto or nccl with a build
//    without NCCL is FailedPrecondition; else cuda + nccl;
//  - device auto: cuda + nccl when the build has CUDA and NCCL, every rank
//    has a GPU and the backend is auto or nccl; else cpu with the backend
//    unchanged, except that backend nccl then is FailedPrecondition (nccl
//    needs a GPU on every rank).
Result<Placement> DecidePlacement(const PlacementInput& input);

// Collective over `world` (every rank calls it): reads this rank's local rank
// (LocalRankFromEnv) and GPU count (CudaDeviceCount), all-gathers both and
// decides. Every rank returns the same device, backend and reason, or the
// same error (a bad local-rank variable on any rank included). Logging: a
// rank without a GPU logs its own reason (CudaDeviceCount's why_not) as a
// warning when a cuda/nccl request fails for want of a device, and at info
// level when a CUDA build's auto falls back to the CPU; Placement::warning
// is logged here too (callers need not log it again). Nothing is logged for
// a CPU-only build's auto.
Result<Placement> AgreePlacement(Communicator& world, const std::string& device,
                                 const std::string& backend);
// The same with the environment lookup injected (tests).
Result<Placement> AgreePlacement(Communicator& world, const std::string& device,
                                 const std::string& backend, const EnvLookup& getenv);

}  // namespace cohort
