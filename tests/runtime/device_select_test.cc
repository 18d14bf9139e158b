// Device placement (runtime/device_select.h): the local rank from the
// environment, and the cpu/cuda + backend rules of DecidePlacement, on
// made-up worlds (no GPU needed). The collective AgreePlacement runs under
// mpirun in tests/runtime/device_select_mpi_test.cc.

#include "runtime/device_select.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "cohort/config.h"

namespace cohort {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// An environment of exactly these variables.
EnvLookup Env(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

// ---- LocalRankFromEnv --------------------------------------------------------

TEST(LocalRankFromEnv, NoneSetIsZeroFromDefault) {
  auto info = LocalRankFromEnv(Env({}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->local_rank, 0);
  EXPECT_EQ(info->source, "default");
}

TEST(LocalRankFromEnv, EachVariableAlone) {
  int value = 3;
  for (const std::string& name : LocalRankVariables()) {
    auto info = LocalRankFromEnv(Env({{name, std::to_string(value)}}));
    ASSERT_TRUE(info.ok()) << name << ": " << info.status().ToString();
    EXPECT_EQ(info->local_rank, value) << name;
    EXPECT_EQ(info->source, name);
    ++value;
  }
  EXPECT_EQ(LocalRankVariables().size(), 5u);
}

TEST(LocalRankFromEnv, PrecedenceIsTheDocumentedOrder) {
  // Every variable set to a different value: the first of the list wins;
  // dropping it, the next one does, and so on down the list.
  const std::vector<std::string> order = {"COHORT_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                                          "LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
  EXPECT_EQ(LocalRankVariables(), order);
  for (size_t first = 0; first < order.size(); ++first) {
    std::map<std::string, std::string> vars;
    for (size_t i = first; i < order.size(); ++i) vars[order[i]] = std::to_string(10 + i);
    auto info = LocalRankFromEnv(Env(vars));
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->source, order[first]);
    EXPECT_EQ(info->local_rank, static_cast<int>(10 + first));
  }
}

TEST(LocalRankFromEnv, ALaterMalformedVariableIsNotRead) {
  auto info =
      LocalRankFromEnv(Env({{"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"LOCAL_RANK", "garbage"}}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->local_rank, 2);
  EXPECT_EQ(info->source, "OMPI_COMM_WORLD_LOCAL_RANK");
}

TEST(LocalRankFromEnv, MalformedOrNegativeIsAnErrorNamingVariableAndValue) {
  const std::string too_big = std::to_string(kMaxLocalRank + 1);
  for (const std::string& name : LocalRankVariables()) {
    for (const std::string& bad :
         {std::string("-1"), std::string(""), std::string("abc"), std::string("1x"),
          std::string(" 1"), std::string("+1"), std::string("1.5"), too_big,
          std::string("99999999999999999999999")}) {
      // A valid variable further down the list does not rescue a bad one.
      std::map<std::string, std::string> vars = {{name, bad}};
      if (name != "SLURM_LOCALID") vars["SLURM_LOCALID"] = "1";
      auto info = LocalRankFromEnv(Env(vars));
      ASSERT_FALSE(info.ok()) << name << "='" << bad << "'";
      EXPECT_EQ(info.status().code(), StatusCode::kInvalidArgument);
      EXPECT_THAT(info.status().message(), HasSubstr(name + "='" + bad + "'"));
    }
  }
}

TEST(LocalRankFromEnv, LargestAcceptedValue) {
  auto info = LocalRankFromEnv(Env({{"LOCAL_RANK", std::to_string(kMaxLocalRank)}}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->local_rank, kMaxLocalRank);
  auto zero = LocalRankFromEnv(Env({{"LOCAL_RANK", "007"}}));
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->local_rank, 7);
}

TEST(CudaDeviceCount, ZeroWithAReasonOrSomeDevices) {
  std::string why;
  const int n = CudaDeviceCount(&why);
  EXPECT_GE(n, 0);
  if (!COHORT_HAVE_CUDA) {
    EXPECT_EQ(n, 0);
    EXPECT_THAT(why, HasSubstr("no CUDA"));
  }
  if (n == 0) {
    EXPECT_FALSE(why.empty());
  }
  EXPECT_EQ(CudaDeviceCount(nullptr), n);
}

// ---- DecidePlacement ---------------------------------------------------------

// A world of gpu_counts.size() ranks on hosts of `per_host` ranks each
// (local rank = rank % per_host), a build with CUDA and NCCL.
PlacementInput World(std::vector<int> gpu_counts, int per_host, int rank,
                     std::string device = "auto", std::string backend = "auto") {
  PlacementInput in;
  in.device = std::move(device);
  in.backend = std::move(backend);
  in.build_has_cuda = true;
  in.build_has_nccl = true;
  for (size_t r = 0; r < gpu_counts.size(); ++r)
    in.local_ranks.push_back(static_cast<int>(r) % per_host);
  in.gpu_counts = std::move(gpu_counts);
  in.rank = rank;
  return in;
}

TEST(DecidePlacement, AutoWithAGpuEverywhereIsCudaAndNccl) {
  for (int rank = 0; rank < 4; ++rank) {
    auto p = DecidePlacement(World({2, 2, 2, 2}, 2, rank));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->device, DeviceKind::kCuda);
    EXPECT_EQ(p->cuda_device, rank % 2);
    EXPECT_EQ(p->backend, "nccl");
    EXPECT_EQ(p->reason, "auto: every rank has a GPU -> cuda + nccl");
    EXPECT_EQ(p->warning, "");
  }
  // An explicit nccl is the same.
  auto p = DecidePlacement(World({1, 1}, 1, 1, "auto", "nccl"));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->device, DeviceKind::kCuda);
  EXPECT_EQ(p->backend, "nccl");
  EXPECT_EQ(p->cuda_device, 0);
}

TEST(DecidePlacement, AutoWithOneRankWithoutGpuIsCpuOnEveryRank) {
  // Ranks 0-2 have GPUs, rank 3 none: every rank, GPU or not, gets the CPU.
  for (int rank = 0; rank < 4; ++rank) {
    auto p = DecidePlacement(World({1, 1, 1, 0}, 1, rank));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->device, DeviceKind::kCpu);
    EXPECT_EQ(p->cuda_device, -1);
    EXPECT_EQ(p->backend, "auto");
    EXPECT_EQ(p->reason, "auto: rank 3 has no GPU -> cpu");
  }
  auto p = DecidePlacement(World({0, 1, 0, 0, 0, 0, 0}, 1, 0, "auto", "gloo"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->backend, "gloo");
  EXPECT_EQ(p->reason, "auto: ranks 0, 2, 3, 4 and 2 more have no GPU -> cpu");
}

TEST(DecidePlacement, AutoFallsBackToCpuWithoutCudaOrNcclInTheBuild) {
  PlacementInput in = World({0, 0}, 2, 0);
  in.build_has_cuda = false;
  in.build_has_nccl = false;
  auto p = DecidePlacement(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->device, DeviceKind::kCpu);
  EXPECT_EQ(p->backend, "auto");
  EXPECT_EQ(p->reason, "auto: this build has no CUDA -> cpu");

  in = World({1, 1}, 1, 0);
  in.build_has_nccl = false;
  p = DecidePlacement(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->device, DeviceKind::kCpu);
  EXPECT_EQ(p->reason, "auto: this build has no NCCL -> cpu");
}

TEST(DecidePlacement, AutoWithAHostBackendStaysOnTheCpu) {
  for (const char* backend : {"mpi", "shm", "gloo"}) {
    auto p = DecidePlacement(World({1, 1}, 1, 0, "auto", backend));
    ASSERT_TRUE(p.ok()) << backend;
    EXPECT_EQ(p->device, DeviceKind::kCpu);
    EXPECT_EQ(p->backend, backend);
    EXPECT_EQ(p->reason, std::string("auto: backend ") + backend + " runs on host buffers -> cpu");
  }
}

TEST(DecidePlacement, AutoWithNcclButNoGpuSomewhereIsAnError) {
  auto p = DecidePlacement(World({1, 1, 1, 0}, 1, 0, "auto", "nccl"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(p.status().message(),
              HasSubstr("backend nccl needs a GPU on every rank, but rank 3 has no GPU"));
}

TEST(DecidePlacement, CudaWhenEveryRankHasAGpu) {
  auto p = DecidePlacement(World({4, 4}, 2, 1, "cuda", "auto"));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->device, DeviceKind::kCuda);
  EXPECT_EQ(p->cuda_device, 1);
  EXPECT_EQ(p->backend, "nccl");
  EXPECT_EQ(p->reason, "cuda: every rank has a GPU -> cuda + nccl");
  p = DecidePlacement(World({4, 4}, 2, 0, "cuda", "nccl"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->backend, "nccl");
}

TEST(DecidePlacement, CudaWithARankWithoutGpuIsAnErrorNamingIt) {
  // The same error on every rank, whether that rank has a GPU or not.
  std::string first;
  for (int rank = 0; rank < 4; ++rank) {
    auto p = DecidePlacement(World({1, 1, 1, 0}, 1, rank, "cuda"));
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(p.status().message(), HasSubstr("rank 3 of 4 sees no CUDA device"));
    EXPECT_THAT(p.status().message(), Not(HasSubstr("rank 0")));
    if (rank == 0) first = p.status().message();
    EXPECT_EQ(p.status().message(), first);
  }
  auto many = DecidePlacement(World({0, 0, 0, 0, 0, 0}, 1, 0, "cuda"));
  ASSERT_FALSE(many.ok());
  EXPECT_THAT(many.status().message(), HasSubstr("ranks 0, 1, 2, 3 and 2 more of 6"));
}

TEST(DecidePlacement, CudaInABuildWithoutCudaOrNccl) {
  PlacementInput in = World({0, 0}, 2, 0, "cuda");
  in.build_has_cuda = false;
  in.build_has_nccl = false;
  auto p = DecidePlacement(in);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(p.status().message(), HasSubstr("this build has no CUDA"));

  in = World({1, 1}, 1, 0, "cuda");
  in.build_has_nccl = false;
  p = DecidePlacement(in);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(p.status().message(), HasSubstr("this build has no NCCL"));
}

TEST(DecidePlacement, CudaWithAHostBackendIsInvalid) {
  for (const char* backend : {"mpi", "shm", "gloo"}) {
    auto p = DecidePlacement(World({1, 1}, 1, 0, "cuda", backend));
    ASSERT_FALSE(p.ok()) << backend;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(),
                HasSubstr("the trainer's buffers live on the GPU; use --backend nccl (or auto)"));
    EXPECT_THAT(p.status().message(), HasSubstr(std::string("backend ") + backend));
  }
}

TEST(DecidePlacement, CpuKeepsTheBackendAndRejectsNccl) {
  for (const char* backend : {"auto", "mpi", "shm", "gloo"}) {
    auto p = DecidePlacement(World({8, 8}, 1, 1, "cpu", backend));
    ASSERT_TRUE(p.ok()) << backend;
    EXPECT_EQ(p->device, DeviceKind::kCpu);
    EXPECT_EQ(p->cuda_device, -1);
    EXPECT_EQ(p->backend, backend);
    EXPECT_EQ(p->warning, "");
  }
  auto p = DecidePlacement(World({8, 8}, 1, 1, "cpu", "nccl"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("device is cpu"));
}

TEST(DecidePlacement, DeviceIndexWrapsWithAWarningWhenRanksShareAGpu) {
  // 4 ranks on one host with 2 GPUs: local ranks 2 and 3 share devices 0 and 1.
  const int want_device[] = {0, 1, 0, 1};
  for (int rank = 0; rank < 4; ++rank) {
    auto p = DecidePlacement(World({2, 2, 2, 2}, 4, rank, "cuda"));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->cuda_device, want_device[rank]);
    if (rank < 2) {
      EXPECT_EQ(p->warning, "") << rank;
    } else {
      EXPECT_THAT(p->warning,
                  HasSubstr("local rank " + std::to_string(rank) + " but only 2 CUDA device(s)"));
      EXPECT_THAT(p->warning, HasSubstr("shares device " + std::to_string(want_device[rank])));
    }
  }
}

TEST(DecidePlacement, UnknownSettingsListTheAcceptedValues) {
  auto p = DecidePlacement(World({1}, 1, 0, "gpu"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(), "unknown device 'gpu' (expected cpu, cuda or auto)");
  p = DecidePlacement(World({1}, 1, 0, "auto", "mpich"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message(),
            "unknown backend 'mpich' (expected auto, mpi, shm, gloo or nccl)");
}

TEST(DecidePlacement, MalformedInputIsInvalid) {
  PlacementInput in = World({1, 1}, 1, 0);
  in.local_ranks.pop_back();
  EXPECT_EQ(DecidePlacement(in).status().code(), StatusCode::kInvalidArgument);
  in = World({1, 1}, 1, 2);
  EXPECT_EQ(DecidePlacement(in).status().code(), StatusCode::kInvalidArgument);
  in = World({1, -1}, 1, 0);
  EXPECT_EQ(DecidePlacement(in).status().code(), StatusCode::kInvalidArgument);
  in = World({}, 1, 0);
  EXPECT_EQ(DecidePlacement(in).status().code(), StatusCode::kInvalidArgument);
}

TEST(DecidePlacement, NamesOfKindsAndSettings) {
  EXPECT_EQ(DeviceKindName(DeviceKind::kCpu), "cpu");
  EXPECT_EQ(DeviceKindName(DeviceKind::kCuda), "cuda");
  EXPECT_EQ(DeviceSettings(), (std::vector<std::string>{"cpu", "cuda", "auto"}));
  EXPECT_EQ(PlacementBackends(), (std::vector<std::string>{"auto", "mpi", "shm", "gloo", "nccl"}));
}

// The BLAS-thread rule sees Slurm's task layout under srun (the bug it
// guards against: 2 ranks on a 2-core node got 2 threads each).
TEST(HostLayoutFromEnv, NoneSetIsOneRankFromDefault) {
  auto l = HostLayoutFromEnv(Env({}));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->local_ranks, 1);
  EXPECT_EQ(l->cpus_per_rank, 0);
  EXPECT_EQ(l->source, "default");
  EXPECT_EQ(DefaultBlasThreads(*l, 2), 2);
}

TEST(HostLayoutFromEnv, SrunTwoTasksOnTwoCoresGetOneThreadEach) {
  auto l =
      HostLayoutFromEnv(Env({{"SLURM_STEP_TASKS_PER_NODE", "2"}, {"SLURM_TASKS_PER_NODE", "4"}}));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->local_ranks, 2);
  EXPECT_EQ(l->source, "SLURM_STEP_TASKS_PER_NODE");
  EXPECT_EQ(DefaultBlasThreads(*l, 2), 1);
}

TEST(HostLayoutFromEnv, CompressedListIsIndexedByNodeId) {
  for (auto [node, want] :
       std::vector<std::pair<std::string, int>>{{"0", 2}, {"2", 2}, {"3", 1}, {"4", 5}}) {
    auto l =
        HostLayoutFromEnv(Env({{"SLURM_TASKS_PER_NODE", "2(x3),1,5"}, {"SLURM_NODEID", node}}));
    ASSERT_TRUE(l.ok()) << node;
    EXPECT_EQ(l->local_ranks, want) << node;
  }
  auto past = HostLayoutFromEnv(Env({{"SLURM_TASKS_PER_NODE", "2(x3)"}, {"SLURM_NODEID", "3"}}));
  EXPECT_EQ(past.status().code(), StatusCode::kInvalidArgument);
}

TEST(HostLayoutFromEnv, MpirunWinsAndCpusPerTaskSetsTheThreads) {
  auto l = HostLayoutFromEnv(Env({{"OMPI_COMM_WORLD_LOCAL_SIZE", "3"},
                                  {"SLURM_STEP_TASKS_PER_NODE", "2"},
                                  {"SLURM_CPUS_PER_TASK", "4"}}));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->local_ranks, 3);
  EXPECT_EQ(l->cpus_per_rank, 4);
  EXPECT_EQ(DefaultBlasThreads(*l, 64), 4);
  auto n = HostLayoutFromEnv(Env({{"SLURM_NTASKS_PER_NODE", "4"}}));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(DefaultBlasThreads(*n, 2), 1);
}

TEST(HostLayoutFromEnv, MalformedIsAnErrorNamingTheVariable) {
  for (const char* bad : {"", "x", "0", "2(x", "2(x0)", "2(x1"}) {
    auto l = HostLayoutFromEnv(Env({{"SLURM_TASKS_PER_NODE", bad}}));
    ASSERT_FALSE(l.ok()) << bad;
    EXPECT_NE(l.status().message().find("SLURM_TASKS_PER_NODE"), std::string::npos);
  }
  EXPECT_FALSE(HostLayoutFromEnv(Env({{"SLURM_CPUS_PER_TASK", "-1"}})).ok());
}

}  // namespace
}  // namespace cohort
