// The Gloo backend with 1-4 ranks as threads in one process over an
// in-memory Store and loopback TCP: every op and dtype against a serial
// reference, sub-communicators, point-to-point, and a silent peer giving the
// others an error within the timeout instead of a hang.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <thread>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"

namespace cohort {
namespace {

using std::chrono::milliseconds;

// Runs fn(comm) on `n` ranks, each in its own thread; returns each rank's status.
std::vector<Status> OnRanks(int n, const std::function<Status(GlooCommunicator&)>& fn,
                            milliseconds timeout = milliseconds(20000)) {
  auto store = std::make_shared<InMemoryStore>();
  std::vector<Status> out(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  static int run = 0;
  const std::string prefix = "run" + std::to_string(run++);
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      GlooOptions o;
      o.prefix = prefix;
      o.timeout = timeout;
      auto c = GlooCommunicator::Create(store, r, n, o);
      out[static_cast<size_t>(r)] = c.ok() ? fn(**c) : c.status();
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

void ExpectAllOk(const std::vector<Status>& s) {
  for (size_t r = 0; r < s.size(); ++r) EXPECT_TRUE(s[r].ok()) << "rank " << r << ": " << s[r].ToString();
}

double Val(int r, size_t i) { return static_cast<double>((r + 1) * 3 + static_cast<int>(i % 7)) - 5.0; }

double Reduced(ReduceOp op, int n, size_t i, DType t) {
  double acc = Val(0, i);
  for (int r = 1; r < n; ++r) {
    const double v = Val(r, i);
    if (op == ReduceOp::kMax) acc = std::max(acc, v);
    else if (op == ReduceOp::kMin) acc = std::min(acc, v);
    else if (op == ReduceOp::kProd) acc *= v;
    else acc += v;
  }
  if (op == ReduceOp::kAvg) acc = IsFloating(t) ? acc / n : static_cast<double>(static_cast<int64_t>(acc) / n);
  return acc;
}

class GlooAllReduce : public ::testing::TestWithParam<std::tuple<int, DType, ReduceOp>> {};

TEST_P(GlooAllReduce, MatchesSerialReductionForOddCountsInAndOutOfPlace) {
  auto [n, dtype, op] = GetParam();
  ExpectAllOk(OnRanks(n, [&](GlooCommunicator& c) -> Status {
    for (size_t count : {size_t{0}, size_t{1}, size_t{13}, size_t{70001}}) {
      for (bool in_place : {false, true}) {
        std::vector<char> a(count * DTypeSize(dtype) + 8), b(a.size());
        for (size_t i = 0; i < count; ++i) StoreElement(dtype, a.data(), i, Val(c.rank(), i));
        void* out = in_place ? a.data() : b.data();
        COHORT_RETURN_IF_ERROR(c.AllReduce(a.data(), out, count, dtype, op));
        for (size_t i = 0; i < count; ++i) {
          const double e = Reduced(op, n, i, dtype);
          const double tol = dtype == DType::kBF16 ? 0.02 * std::max(1.0, std::abs(e))
                             : dtype == DType::kF16 ? 0.002 * std::max(1.0, std::abs(e)) : 1e-6;
          if (std::abs(LoadElement(dtype, out, i) - e) > tol) {
            return Internal("element " + std::to_string(i) + " of " + std::to_string(count) + ": " +
                            std::to_string(LoadElement(dtype, out, i)) + " != " + std::to_string(e));
          }
        }
      }
    }
    return Status::Ok();
  }));
}

INSTANTIATE_TEST_SUITE_P(Contract, GlooAllReduce,
                         ::testing::Combine(::testing::Values(1, 2, 3), ::testing::ValuesIn(kAllDTypes),
                                            ::testing::Values(ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax,
                                                              ReduceOp::kMin)));

TEST(Gloo, BroadcastAllGatherReduceScatterReduceAllToAll) {
  const int n = 4;
  ExpectAllOk(OnRanks(n, [&](GlooCommunicator& c) -> Status {
    const int r = c.rank();
    for (int root = 0; root < n; ++root) {
      std::vector<float> v(17, -1);
      if (r == root) for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(root * 100 + i);
      COHORT_RETURN_IF_ERROR(c.Broadcast(v.data(), v.size(), DType::kF32, root));
      for (size_t i = 0; i < v.size(); ++i) if (v[i] != static_cast<float>(root * 100 + i)) return Internal("broadcast");
    }
    std::vector<int32_t> mine(5), all(5 * n);
    for (int i = 0; i < 5; ++i) mine[static_cast<size_t>(i)] = r * 10 + i;
    COHORT_RETURN_IF_ERROR(c.AllGather(mine.data(), all.data(), 5, DType::kI32));
    for (int q = 0; q < n; ++q)
      for (int i = 0; i < 5; ++i) if (all[static_cast<size_t>(q * 5 + i)] != q * 10 + i) return Internal("allgather");
    std::vector<double> rs(3 * n), part(3);
    for (size_t i = 0; i < rs.size(); ++i) rs[i] = Val(r, i);
    COHORT_RETURN_IF_ERROR(c.ReduceScatter(rs.data(), part.data(), 3, DType::kF64, ReduceOp::kSum));
    for (size_t i = 0; i < 3; ++i) {
      if (part[i] != Reduced(ReduceOp::kSum, n, static_cast<size_t>(r) * 3 + i, DType::kF64)) return Internal("reduce-scatter");
    }
    std::vector<int64_t> red(9, r + 1), got(9, 0);
    COHORT_RETURN_IF_ERROR(c.Reduce(red.data(), got.data(), 9, DType::kI64, ReduceOp::kSum, 2));
    if (r == 2) for (int64_t x : got) if (x != n * (n + 1) / 2) return Internal("reduce");
    std::vector<int32_t> a2a(2 * n), back(2 * n);
    for (int q = 0; q < n; ++q) { a2a[static_cast<size_t>(2 * q)] = r * 100 + q; a2a[static_cast<size_t>(2 * q + 1)] = -r; }
    COHORT_RETURN_IF_ERROR(c.AllToAll(a2a.data(), back.data(), 2, DType::kI32));
    for (int q = 0; q < n; ++q) {
      if (back[static_cast<size_t>(2 * q)] != q * 100 + r || back[static_cast<size_t>(2 * q + 1)] != -q) return Internal("alltoall");
    }
    return c.Barrier();
  }));
}

TEST(Gloo, PointToPointRingAndSplit) {
  const int n = 4;
  ExpectAllOk(OnRanks(n, [&](GlooCommunicator& c) -> Status {
    const int r = c.rank(), next = (r + 1) % n, prev = (r + n - 1) % n;
    for (int round = 0; round < 3; ++round) {
      std::vector<int64_t> out(100, r * 1000 + round), in(100, -1);
      if (r % 2 == 0) {
        COHORT_RETURN_IF_ERROR(c.Send(out.data(), out.size(), DType::kI64, next));
        COHORT_RETURN_IF_ERROR(c.Recv(in.data(), in.size(), DType::kI64, prev));
      } else {
        COHORT_RETURN_IF_ERROR(c.Recv(in.data(), in.size(), DType::kI64, prev));
        COHORT_RETURN_IF_ERROR(c.Send(out.data(), out.size(), DType::kI64, next));
      }
      for (int64_t x : in) if (x != prev * 1000 + round) return Internal("recv got the wrong data");
    }
    COHORT_ASSIGN_OR_RETURN(auto sub, c.SplitGroup(r % 2, -r));  // key -r: reverse order
    if (sub->size() != 2) return Internal("split size");
    if (sub->rank() != (r < 2 ? 1 : 0)) return Internal("split rank order by key");
    int32_t x = r, sum = 0;
    COHORT_RETURN_IF_ERROR(sub->AllReduce(&x, &sum, 1, DType::kI32, ReduceOp::kSum));
    return sum == (r % 2 == 0 ? 0 + 2 : 1 + 3) ? Status::Ok() : Internal("split all-reduce");
  }));
}

TEST(Gloo, BadArgumentsAreErrors) {
  ExpectAllOk(OnRanks(2, [&](GlooCommunicator& c) -> Status {
    float x = 0;
    if (c.Broadcast(&x, 1, DType::kF32, 5).code() != StatusCode::kInvalidArgument) return Internal("bad root");
    if (c.Send(&x, 1, DType::kF32, c.rank()).code() != StatusCode::kInvalidArgument) return Internal("send to self");
    return Status::Ok();
  }));
  EXPECT_EQ(GlooCommunicator::Create(std::make_shared<InMemoryStore>(), 3, 2).status().code(), StatusCode::kInvalidArgument);
}

TEST(Gloo, SilentPeerGivesAnErrorWithinTheTimeout) {
  // Rank 2 joins the mesh, then never calls the all-reduce: the others must
  // fail within the 1 s timeout rather than wait forever.
  const auto start = std::chrono::steady_clock::now();
  auto s = OnRanks(3, [&](GlooCommunicator& c) -> Status {
    if (c.rank() == 2) {
      std::this_thread::sleep_for(milliseconds(3000));
      return Status::Ok();
    }
    std::vector<float> v(1024, 1.0f);
    Status st = c.AllReduce(v.data(), v.data(), v.size(), DType::kF32, ReduceOp::kSum);
    return st.ok() ? Internal("all-reduce succeeded without rank 2") : st;
  }, milliseconds(1000));
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(s[static_cast<size_t>(r)].code(), StatusCode::kDeadlineExceeded) << s[static_cast<size_t>(r)].ToString();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(Gloo, MissingPeersTimeOutAtBootstrap) {
  auto store = std::make_shared<InMemoryStore>();
  GlooOptions o;
  o.timeout = milliseconds(300);
  auto c = GlooCommunicator::Create(store, 0, 2, o);  // rank 1 never comes
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bootstrap"), std::string::npos) << c.status().ToString();
}

}  // namespace
}  // namespace cohort
