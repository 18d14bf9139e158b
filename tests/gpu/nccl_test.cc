// The NCCL backend on real GPUs, under mpirun (one rank per GPU). Labelled
// `gpu` in ctest; on a machine without a CUDA device every rank skips with
// the reason. Data is seeded per rank and every element is checked.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "collectives/mpi/mpi_communicator.h"
#include "collectives/nccl/nccl_communicator.h"
#include "runtime/device_select.h"
#include "tests/collectives/mpi_gtest.h"

namespace cohort {
namespace {

MpiCommunicator* g_mpi = nullptr;
std::unique_ptr<NcclCommunicator> g_nccl;
std::string g_skip;

template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(size_t n) : n(n) {
    cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(1, n) * sizeof(T));
  }
  ~DeviceBuffer() { cudaFree(p); }
  void Upload(const std::vector<T>& h) {
    cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> Download() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  T* p = nullptr;
  size_t n;
};

#define SKIP_WITHOUT_GPU() \
  if (!g_nccl) GTEST_SKIP() << g_skip

TEST(Nccl, AllReduceSumAndAvgFloat) {
  SKIP_WITHOUT_GPU();
  const int n = g_nccl->size(), r = g_nccl->rank();
  for (size_t count : {size_t{1}, size_t{1027}, size_t{1} << 20}) {
    std::vector<float> h(count);
    for (size_t i = 0; i < count; ++i) h[i] = static_cast<float>((r + 1) * (i % 13));
    DeviceBuffer<float> d(count);
    d.Upload(h);
    ASSERT_TRUE(g_nccl->AllReduce(d.p, d.p, count, DType::kF32, ReduceOp::kSum).ok());
    auto out = d.Download();
    const float ranks_sum = static_cast<float>(n * (n + 1) / 2);
    int wrong = 0;
    for (size_t i = 0; i < count; ++i) wrong += out[i] != ranks_sum * static_cast<float>(i % 13);
    EXPECT_EQ(wrong, 0) << count;
    d.Upload(h);
    ASSERT_TRUE(g_nccl->AllReduce(d.p, d.p, count, DType::kF32, ReduceOp::kAvg).ok());
    out = d.Download();
    wrong = 0;
    for (size_t i = 0; i < count; ++i)
      wrong += std::abs(out[i] - ranks_sum / n * static_cast<float>(i % 13)) > 1e-4f;
    EXPECT_EQ(wrong, 0) << count;
  }
}

TEST(Nccl, BroadcastAllGatherReduceScatterInPlace) {
  SKIP_WITHOUT_GPU();
  const int n = g_nccl->size(), r = g_nccl->rank();
  DeviceBuffer<int32_t> b(100);
  b.Upload(std::vector<int32_t>(100, r == 0 ? 42 : -1));
  ASSERT_TRUE(g_nccl->Broadcast(b.p, 100, DType::kI32, 0).ok());
  for (int32_t v : b.Download()) ASSERT_EQ(v, 42);
  DeviceBuffer<int64_t> g(static_cast<size_t>(4 * n));
  std::vector<int64_t> mine(static_cast<size_t>(4 * n), -1);
  for (int i = 0; i < 4; ++i) mine[static_cast<size_t>(4 * r + i)] = r * 10 + i;
  g.Upload(mine);
  ASSERT_TRUE(g_nccl->AllGather(g.p + 4 * r, g.p, 4, DType::kI64).ok());  // in place
  auto all = g.Download();
  for (int q = 0; q < n; ++q)
    for (int i = 0; i < 4; ++i) ASSERT_EQ(all[static_cast<size_t>(4 * q + i)], q * 10 + i);
  DeviceBuffer<float> rs(static_cast<size_t>(3 * n));
  rs.Upload(std::vector<float>(static_cast<size_t>(3 * n), 1.0f + static_cast<float>(r)));
  ASSERT_TRUE(g_nccl->ReduceScatter(rs.p, rs.p, 3, DType::kF32, ReduceOp::kSum).ok());
  auto got = rs.Download();
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(got[static_cast<size_t>(i)], static_cast<float>(n * (n + 1) / 2));
}

TEST(Nccl, SplitAndBarrier) {
  SKIP_WITHOUT_GPU();
  auto sub = g_nccl->SplitGroup(g_nccl->rank() % 2, g_nccl->rank());
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_TRUE((*sub)->Barrier().ok());
  EXPECT_TRUE(g_nccl->Barrier().ok());
}

}  // namespace
}  // namespace cohort

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!cohort::MpiRuntime::Init(&argc, &argv).ok()) return 2;
  int rc = 0;
  {
    auto mpi = cohort::MpiCommunicator::World();
    if (!mpi.ok()) return 2;
    cohort::g_mpi = mpi->get();
    // Every rank must agree to run or skip; each takes device local rank mod
    // devices, as the trainer's placement does.
    std::string why;
    const int devices = cohort::CudaDeviceCount(&why);
    auto local = cohort::LocalRankFromEnv();
    if (!local.ok()) why = local.status().ToString();
    int32_t have = devices > 0 && local.ok() ? 1 : 0, all = 0;
    (void)cohort::g_mpi->AllReduce(&have, &all, 1, cohort::DType::kI32, cohort::ReduceOp::kMin);
    std::string dir;
    if (all == 1) {
      // A file store in a directory rank 0 makes, named over MPI.
      std::vector<char> path(1024, 0);
      if (cohort::g_mpi->rank() == 0) {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cohort-nccl-XXXXXX").string();
        if (::mkdtemp(tmpl.data())) std::snprintf(path.data(), path.size(), "%s", tmpl.c_str());
      }
      (void)cohort::g_mpi->Broadcast(path.data(), path.size() / 4, cohort::DType::kI32, 0);
      dir = path.data();
      auto store = cohort::FileStore::Open(dir);
      if (store.ok()) {
        cohort::NcclOptions options;
        options.device = local->local_rank % devices;
        auto c = cohort::NcclCommunicator::Create(**store, cohort::g_mpi->rank(),
                                                  cohort::g_mpi->size(), options);
        if (c.ok())
          cohort::g_nccl = std::move(*c);
        else
          cohort::g_skip = "NCCL bootstrap failed: " + c.status().ToString();
      }
    } else {
      cohort::g_skip = "no CUDA device on every rank (" + why + ")";
    }
    rc = cohort::testing::RunAllTestsOnEveryRank(cohort::g_mpi->rank());
    cohort::g_nccl.reset();
    if (cohort::g_mpi->rank() == 0 && !dir.empty()) std::filesystem::remove_all(dir);
  }
  cohort::MpiRuntime::Finalize();
  return rc;
}
