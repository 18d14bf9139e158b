// The Communicator contract on the MPI backend, run under mpirun with 1, 2
// and 4 ranks. Each rank runs every test; a failure on any rank makes that
// rank exit non-zero, which fails the mpirun.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "collectives/mpi/mpi_communicator.h"
#include "tests/mpi/mpi_gtest.h"

namespace cohort {
namespace {

MpiCommunicator* g_comm = nullptr;

// The seeded value rank r contributes at element i.
double Value(int r, size_t i) { return static_cast<double>((r + 1) * 3 + static_cast<int>(i % 7)) - 5.0; }

double Expected(ReduceOp op, int world, size_t i) {
  double acc = Value(0, i);
  for (int r = 1; r < world; ++r) {
    const double v = Value(r, i);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc += v; break;
      case ReduceOp::kMax: acc = std::max(acc, v); break;
      case ReduceOp::kMin: acc = std::min(acc, v); break;
      case ReduceOp::kProd: acc *= v; break;
    }
  }
  if (op == ReduceOp::kAvg) acc /= world;
  return acc;
}

// Encodes/decodes doubles into a byte buffer of dtype t.
double Tolerance(DType t, double expect) {
  if (t == DType::kF16) return 2e-3 * std::max(1.0, std::abs(expect));
  if (t == DType::kBF16) return 1.6e-2 * std::max(1.0, std::abs(expect));
  return 1e-6 * std::max(1.0, std::abs(expect));
}

class AllReduceTest : public ::testing::TestWithParam<std::tuple<DType, ReduceOp, size_t, bool>> {};

TEST_P(AllReduceTest, EveryElementMatchesTheSerialReduction) {
  auto [dtype, op, count, in_place] = GetParam();
  const int world = g_comm->size(), rank = g_comm->rank();
  std::vector<char> send(count * DTypeSize(dtype) + 1), recv(count * DTypeSize(dtype) + 1);
  for (size_t i = 0; i < count; ++i) StoreElement(dtype, send.data(), i, Value(rank, i));
  void* out = in_place ? send.data() : recv.data();
  ASSERT_TRUE(g_comm->AllReduce(send.data(), out, count, dtype, op).ok());
  int wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    double expect = Expected(op, world, i);
    if (!IsFloating(dtype) && op == ReduceOp::kAvg) {
      // integer average: the integer sum divided with truncation
      int64_t sum = 0;
      for (int r = 0; r < world; ++r) sum += static_cast<int64_t>(Value(r, i));
      expect = static_cast<double>(sum / world);
    }
    if (std::abs(LoadElement(dtype, out, i) - expect) > Tolerance(dtype, expect)) ++wrong;
  }
  EXPECT_EQ(wrong, 0) << "rank " << rank << " dtype " << DTypeName(dtype) << " op " << ReduceOpName(op);
}

INSTANTIATE_TEST_SUITE_P(
    Contract, AllReduceTest,
    ::testing::Combine(::testing::ValuesIn(kAllDTypes),
                       ::testing::Values(ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin),
                       ::testing::Values(size_t{0}, size_t{1}, size_t{7}, size_t{1027}),
                       ::testing::Bool()));

TEST(MpiComm, ProdOfSmallIntegers) {
  const int world = g_comm->size();
  std::vector<int64_t> v(5, g_comm->rank() + 2);
  ASSERT_TRUE(g_comm->AllReduce(v.data(), v.data(), v.size(), DType::kI64, ReduceOp::kProd).ok());
  int64_t expect = 1;
  for (int r = 0; r < world; ++r) expect *= r + 2;
  for (int64_t x : v) EXPECT_EQ(x, expect);
}

TEST(MpiComm, BroadcastFromEveryRoot) {
  for (int root = 0; root < g_comm->size(); ++root) {
    std::vector<float> v(33, static_cast<float>(g_comm->rank()));
    if (g_comm->rank() == root) for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(root * 100 + i);
    ASSERT_TRUE(g_comm->Broadcast(v.data(), v.size(), DType::kF32, root).ok());
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<float>(root * 100 + i));
  }
}

TEST(MpiComm, BroadcastRejectsBadRoot) {
  float x = 0;
  Status s = g_comm->Broadcast(&x, 1, DType::kF32, g_comm->size());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST(MpiComm, AllGatherInRankOrder) {
  const int world = g_comm->size();
  const size_t count = 5;
  std::vector<int32_t> send(count), recv(count * static_cast<size_t>(world), -1);
  for (size_t i = 0; i < count; ++i) send[i] = g_comm->rank() * 10 + static_cast<int32_t>(i);
  ASSERT_TRUE(g_comm->AllGather(send.data(), recv.data(), count, DType::kI32).ok());
  for (int r = 0; r < world; ++r)
    for (size_t i = 0; i < count; ++i) EXPECT_EQ(recv[static_cast<size_t>(r) * count + i], r * 10 + static_cast<int>(i));
}

TEST(MpiComm, ReduceScatterGivesEachRankItsBlock) {
  const int world = g_comm->size(), rank = g_comm->rank();
  const size_t count = 3;
  std::vector<double> send(count * static_cast<size_t>(world)), recv(count);
  for (size_t i = 0; i < send.size(); ++i) send[i] = Value(rank, i);
  for (bool in_place : {false, true}) {
    std::vector<double> buf = send;
    double* out = in_place ? buf.data() : recv.data();
    ASSERT_TRUE(g_comm->ReduceScatter(buf.data(), out, count, DType::kF64, ReduceOp::kSum).ok());
    for (size_t i = 0; i < count; ++i) {
      EXPECT_DOUBLE_EQ(out[i], Expected(ReduceOp::kSum, world, static_cast<size_t>(rank) * count + i))
          << "in_place " << in_place;
    }
  }
}

TEST(MpiComm, AgreeOnStatusSpreadsTheFirstError) {
  const int world = g_comm->size();
  EXPECT_TRUE(AgreeOnStatus(*g_comm, Status::Ok()).ok());
  const int bad = world - 1;
  Status local = g_comm->rank() == bad ? NotFound("shard 3 missing") : Status::Ok();
  Status agreed = AgreeOnStatus(*g_comm, local);
  ASSERT_FALSE(agreed.ok());
  EXPECT_EQ(agreed.code(), StatusCode::kNotFound);
  EXPECT_NE(agreed.message().find("shard 3 missing"), std::string::npos) << agreed.message();
}

TEST(MpiComm, SplitMakesIndependentGroups) {
  const int rank = g_comm->rank();
  auto sub = g_comm->Split(rank % 2, rank);
  ASSERT_TRUE(sub.ok());
  int32_t one = 1, n = 0;
  ASSERT_TRUE((*sub)->AllReduce(&one, &n, 1, DType::kI32, ReduceOp::kSum).ok());
  EXPECT_EQ(n, (*sub)->size());
  EXPECT_EQ((*sub)->size(), (g_comm->size() + 1 - rank % 2) / 2);
}

TEST(MpiComm, BarrierReturns) { EXPECT_TRUE(g_comm->Barrier().ok()); }

}  // namespace
}  // namespace cohort

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!cohort::MpiRuntime::Init(&argc, &argv).ok()) return 2;
  int rc = 0;
  {
    auto comm = cohort::MpiCommunicator::World();
    if (!comm.ok()) return 2;
    cohort::g_comm = comm->get();
    rc = cohort::testing::RunAllTestsOnEveryRank(comm.value()->rank());
  }
  cohort::MpiRuntime::Finalize();
  return rc;
}
