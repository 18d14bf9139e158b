#include "runtime/grad_sync.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "collectives/shm/reduce_kernels.h"
#include "collectives/shm/shm_communicator.h"
#include "runtime/mlp.h"

namespace cohort {
namespace {

TEST(GradBuckets, ReverseLayerOrderSmallFirstBucketContiguous) {
  Mlp m({784, 1024, 1024, 10}, kernels::Activation::kRelu);
  const auto ranges = m.LayerRanges();
  ASSERT_EQ(ranges.size(), 3u);
  const int64_t total = m.num_params() + 1;  // + the loss slot
  // 1 MiB first bucket holds only the classifier (41 KB); a 2 MiB cap cannot
  // fit layer 1 (4 MiB) with anything, and layer 0 (3 MiB) alone.
  auto b = PlanGradBuckets(ranges, total, 2 << 20, 1 << 20);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].first_layer, 2);
  EXPECT_EQ(b[0].offset + b[0].count, total) << "first bucket reaches the end (loss slot)";
  EXPECT_EQ(b[1].first_layer, 1);
  EXPECT_EQ(b[2].first_layer, 0);
  EXPECT_EQ(b[2].offset, 0);
  for (size_t i = 1; i < b.size(); ++i)
    EXPECT_EQ(b[i].offset + b[i].count, b[i - 1].offset) << "contiguous";
  // 25 MiB: the first bucket stays small, the rest share one.
  b = PlanGradBuckets(ranges, total, 25 << 20, 1 << 20);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1].first_layer, 0);
  EXPECT_EQ(b[1].last_layer, 1);
  // Cap 0: a single bucket over everything.
  b = PlanGradBuckets(ranges, total, 0, 1 << 20);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].offset, 0);
  EXPECT_EQ(b[0].count, total);
}

TEST(Compression, CastsMatchTheScalarRoundingForEveryLaneAndTheTail) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 3.0f);
  std::vector<float> in(1003);
  for (float& v : in) v = g(rng);
  in[0] = std::numeric_limits<float>::quiet_NaN();
  in[1] = std::numeric_limits<float>::infinity();
  in[2] = 1e6f;      // overflows fp16 after scaling by 0.5? no: 5e5 > 65504 -> inf
  in[3] = 1e-9f;     // fp16 subnormal / zero
  in[1002] = -2.5f;  // in the scalar tail
  for (DType half : {DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> h(in.size());
    CastFloatToHalf(half, in.data(), h.data(), in.size(), 0.5f);
    std::vector<float> back(in.size());
    CastHalfToFloat(half, h.data(), back.data(), in.size(), 1.0f);
    for (size_t i = 0; i < in.size(); ++i) {
      std::vector<uint16_t> ref(1);
      StoreElement(half, ref.data(), 0, static_cast<double>(in[i] * 0.5f));
      if (std::isnan(in[i])) {
        EXPECT_TRUE(std::isnan(back[i])) << DTypeName(half) << " " << i;
        continue;
      }
      ASSERT_EQ(h[i], ref[0]) << DTypeName(half) << " element " << i << " = " << in[i];
      EXPECT_EQ(back[i], static_cast<float>(LoadElement(half, ref.data(), 0))) << i;
    }
  }
}

// GradientSync over 2 shm ranks (threads): `layers` fake layers of 1000
// gradients each, rank r's gradient i = f(r, i).
std::vector<std::vector<float>> SyncOnTwoRanks(DType wire, int64_t cap_bytes, bool overlap) {
  constexpr int kRanks = 2, kLayers = 4;
  constexpr int64_t kPerLayer = 1000;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int l = 0; l < kLayers; ++l) ranges.emplace_back(l * kPerLayer, kPerLayer);
  const int64_t total = kLayers * kPerLayer + 1;
  auto store = std::make_shared<InMemoryStore>();
  std::vector<std::vector<float>> out(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      auto comm = ShmCommunicator::Create(store, r, kRanks);
      ASSERT_TRUE(comm.ok()) << comm.status().ToString();
      std::vector<float> grads(static_cast<size_t>(total));
      for (size_t i = 0; i < grads.size(); ++i)
        grads[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(r)) * 40.0f;
      std::vector<uint16_t> wire_buf(grads.size());
      {
        GradientSync sync(**comm, grads.data(), PlanGradBuckets(ranges, total, cap_bytes, 4000),
                          kLayers, overlap, nullptr, wire, wire_buf.data());
        for (int step = 0; step < 2; ++step) {  // twice: state is reset per step
          sync.Begin();
          for (int l = kLayers - 1; l >= 0; --l) sync.LayerReady(l);
          ASSERT_TRUE(sync.Finish().ok());
        }
      }
      out[static_cast<size_t>(r)] = grads;
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

TEST(Compression, BucketedAndOverlappedEqualsOneBucketBitwiseAndStaysNearFp32) {
  auto fp32 = SyncOnTwoRanks(DType::kF32, 0, false);
  for (DType wire : {DType::kBF16, DType::kF16}) {
    auto one = SyncOnTwoRanks(wire, 0, false);
    auto many = SyncOnTwoRanks(wire, 4000 * 4, true);  // 4 buckets + a communication thread
    ASSERT_EQ(one.size(), 2u);
    EXPECT_EQ(one[0], one[1]) << "ranks agree";
    EXPECT_EQ(one[0], many[0]) << DTypeName(wire) << ": bucketing changed the bits";
    // Error bound: inputs reach 40 and the average may cancel, so it is
    // absolute: 2 steps x 2 roundings (each rank's half, then the sum) of at
    // most half an ulp at 40 (bf16: 2^-8 relative, fp16: 2^-11), plus slack.
    const double unit = wire == DType::kBF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    const double tol = 4 * 40.0 * unit;
    size_t far = 0;
    for (size_t i = 0; i < fp32[0].size(); ++i) {
      if (std::abs(one[0][i] - fp32[0][i]) > tol) ++far;
    }
    EXPECT_EQ(far, 0u) << DTypeName(wire);
    EXPECT_NE(one[0], fp32[0]) << DTypeName(wire) << ": compression changed nothing";
  }
}

}  // namespace
}  // namespace cohort
