// Device placement agreed over a real MPI world (AgreePlacement), and
// BackendSet::Make("nccl"), under mpirun with 2 ranks. Every rank must reach
// the same decision or the same error; what that is depends on the build
// (COHORT_HAVE_CUDA/NCCL) and on whether every rank sees a GPU, so each test
// works out its expectation from those facts first. On a machine without a
// GPU: auto -> cpu + the CPU auto backend, cuda -> one error on every rank.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cohort/config.h"
#include "collectives/backends.h"
#include "collectives/mpi/mpi_communicator.h"
#include "runtime/device_select.h"
#include "tests/collectives/mpi_gtest.h"

namespace cohort {
namespace {

using ::testing::HasSubstr;

MpiCommunicator* g_world = nullptr;
bool g_every_rank_has_gpu = false;  // agreed in main, before any test

constexpr size_t kTextBytes = 1024;  // an agreed-on string, gathered as a fixed block

// Every rank's `text` (truncated to kTextBytes - 1), indexed by rank.
std::vector<std::string> GatherText(const std::string& text) {
  const size_t n = static_cast<size_t>(g_world->size());
  std::vector<char> mine(kTextBytes, 0), all(kTextBytes * n, 0);
  std::memcpy(mine.data(), text.data(), std::min(text.size(), kTextBytes - 1));
  EXPECT_TRUE(g_world->AllGather(mine.data(), all.data(), kTextBytes / 4, DType::kI32).ok());
  std::vector<std::string> out;
  for (size_t r = 0; r < n; ++r) out.emplace_back(all.data() + r * kTextBytes);
  return out;
}

// True on every rank when every rank sees at least one CUDA device.
// Collectives run before any assertion in these tests, so that a failure on
// one rank cannot leave the other waiting in a collective.
bool EveryRankHasAGpu() {
  int32_t mine = CudaDeviceCount(nullptr) > 0 ? 1 : 0, all = 0;
  return g_world->AllReduce(&mine, &all, 1, DType::kI32, ReduceOp::kMin).ok() && all == 1;
}

EnvLookup Env(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

// Each rank on its own slot of one host, as cohort launch would set it.
EnvLookup OwnSlot() { return Env({{"COHORT_LOCAL_RANK", std::to_string(g_world->rank())}}); }

// The summary of a placement or an error that must be equal on every rank
// (the device index and the warning may differ between ranks).
std::string Summary(const Result<Placement>& p) {
  if (!p.ok()) return "error " + std::string(StatusCodeName(p.status().code()));
  return std::string(DeviceKindName(p->device)) + " " + p->backend + " | " + p->reason;
}

TEST(AgreePlacement, AutoIsTheSameOnEveryRank) {
  const bool gpu = COHORT_HAVE_CUDA && COHORT_HAVE_NCCL && g_every_rank_has_gpu;
  auto p = AgreePlacement(*g_world, "auto", "auto", OwnSlot());
  for (const std::string& s : GatherText(Summary(p))) EXPECT_EQ(s, Summary(p));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  if (gpu) {
    EXPECT_EQ(p->device, DeviceKind::kCuda);
    EXPECT_EQ(p->backend, "nccl");
    EXPECT_EQ(p->cuda_device, g_world->rank() % CudaDeviceCount(nullptr));
  } else {
    EXPECT_EQ(p->device, DeviceKind::kCpu);
    EXPECT_EQ(p->backend, "auto");
    EXPECT_EQ(p->cuda_device, -1);
    EXPECT_EQ(p->reason, COHORT_HAVE_CUDA ? "auto: ranks 0 and 1 have no GPU -> cpu"
                                          : "auto: this build has no CUDA -> cpu");
  }
}

TEST(AgreePlacement, CudaWithoutGpuIsOneErrorOnEveryRank) {
  const bool gpu = COHORT_HAVE_CUDA && COHORT_HAVE_NCCL && g_every_rank_has_gpu;
  auto p = AgreePlacement(*g_world, "cuda", "auto", OwnSlot());
  // The whole message, not just the code, is the same everywhere.
  const std::string text = p.ok() ? Summary(p) : p.status().message();
  for (const std::string& s : GatherText(text)) EXPECT_EQ(s, text);
  if (gpu) {
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->device, DeviceKind::kCuda);
    EXPECT_EQ(p->backend, "nccl");
    return;
  }
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kFailedPrecondition);
  if (!COHORT_HAVE_CUDA) {
    EXPECT_THAT(p.status().message(), HasSubstr("this build has no CUDA"));
  } else if (!g_every_rank_has_gpu) {
    EXPECT_THAT(p.status().message(), HasSubstr("ranks 0 and 1 of 2 see no CUDA device"));
  }
}

TEST(AgreePlacement, CudaWithAHostBackendIsOneErrorOnEveryRank) {
  auto p = AgreePlacement(*g_world, "cuda", "gloo", OwnSlot());
  const std::string text = p.ok() ? Summary(p) : p.status().message();
  for (const std::string& s : GatherText(text)) EXPECT_EQ(s, text);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("use --backend nccl (or auto)"));
}

TEST(AgreePlacement, ABadLocalRankOnOneRankFailsEveryRank) {
  // Only rank 1 has a malformed variable; rank 0 must fail too, not wait.
  auto env = g_world->rank() == 1 ? Env({{"COHORT_LOCAL_RANK", "x1"}}) : Env({{"LOCAL_RANK", "0"}});
  auto p = AgreePlacement(*g_world, "auto", "auto", env);
  // And the world is still usable afterwards: the next call agrees again.
  auto next = AgreePlacement(*g_world, "cpu", "mpi", OwnSlot());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("COHORT_LOCAL_RANK='x1'"));
  if (g_world->rank() == 0) {
    EXPECT_THAT(p.status().message(), HasSubstr("rank 1: "));
  }
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->device, DeviceKind::kCpu);
  EXPECT_EQ(next->backend, "mpi");
  EXPECT_EQ(next->reason, "cpu: as set -> cpu + mpi");
}

TEST(BackendSetNccl, MakeFailsCleanlyWithoutNcclOrDevice) {
  auto group = g_world->Split(0, g_world->rank());
  ASSERT_TRUE(group.ok());
  BackendOptions options;
  options.nccl_device = 0;
  BackendSet set(*g_world, options);
  auto c = set.Make("nccl", **group, "nccl-test");
  const std::string code = c.ok() ? "ok" : std::string(StatusCodeName(c.status().code()));
  for (const std::string& s : GatherText(code)) EXPECT_EQ(s, code);  // no rank left behind
  if (!COHORT_HAVE_NCCL) {
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(c.status().message(),
              "backend nccl: this build has no NCCL (configure with CUDA and NCCL found)");
  } else if (!g_every_rank_has_gpu) {
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(c.status().message(), HasSubstr("backend nccl: no CUDA device"));
  } else if (c.ok()) {
    // With GPUs: a communicator over the group (both ranks on device 0 may
    // be refused by NCCL on one GPU; then both ranks fail alike, above).
    EXPECT_EQ((*c)->backend(), "nccl");
    EXPECT_EQ((*c)->size(), g_world->size());
  }
}

TEST(BackendSetNccl, MakeWithoutAChosenDeviceIsAnError) {
  auto group = g_world->Split(0, g_world->rank());
  ASSERT_TRUE(group.ok());
  BackendSet set(*g_world, BackendOptions{});  // nccl_device -1
  auto c = set.Make("nccl", **group, "nccl-no-device");
  ASSERT_FALSE(c.ok());
  if (COHORT_HAVE_NCCL) {
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr("no CUDA device chosen"));
  } else {
    EXPECT_THAT(c.status().message(), HasSubstr("this build has no NCCL"));
  }
}

TEST(BackendSetNccl, NcclIsABackendName) {
  EXPECT_TRUE(CheckBackendName("nccl").ok());
  EXPECT_EQ(BackendNames(), (std::vector<std::string>{"auto", "mpi", "shm", "gloo", "nccl"}));
  EXPECT_THAT(CheckBackendName("ncc").message(), HasSubstr("auto, mpi, shm, gloo or nccl"));
}

}  // namespace
}  // namespace cohort

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!cohort::MpiRuntime::Init(&argc, &argv).ok()) return 2;
  int rc = 0;
  {
    auto world = cohort::MpiCommunicator::World();
    if (!world.ok()) return 2;
    cohort::g_world = world->get();
    const int rank = cohort::g_world->rank();
    if (cohort::g_world->size() != 2) {
      std::fprintf(
          stderr,
          "device_select_mpi_test: run with mpirun -np 2 (the expected messages name 2 ranks)\n");
      rc = 2;
    } else {
      cohort::g_every_rank_has_gpu = cohort::EveryRankHasAGpu();
      rc = cohort::testing::RunAllTestsOnEveryRank(rank);
    }
  }
  cohort::MpiRuntime::Finalize();
  return rc;
}
