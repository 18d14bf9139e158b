// fp16 loss scaling across ranks, in one process (ranks as threads over shm):
// with ZeRO-1 each rank checks only its partition of the gradients for
// inf/NaN, so an overflow that lands in one rank's partition alone must still
// make every rank skip the step (fault injection through the grad hook).
// Without the agreement, the rank that found nothing steps and starts an
// all-gather that its peer never joins (checked: shm then reports "ranks
// called different collectives" at step 2 and this test fails).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "collectives/shm/shm_communicator.h"
#include "collectives/store.h"
#include "runtime/trainer.h"

namespace cohort {
namespace {

constexpr int kRanks = 2;
constexpr int64_t kSteps = 4;
constexpr int64_t kPoisonedStep = 2;  // rank 1 alone sees an inf at this step
// Short: a rank left waiting for a peer that skipped differently fails fast.
constexpr auto kOpTimeout = std::chrono::seconds(20);

constexpr char kConfig[] = R"(seed: 11
model: {layers: [16, 12, 4], activation: gelu}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
train:
  steps: 4
  global_batch: 32
  precision: fp16
  loss_scale: {initial: 1024, growth_interval: 1000}
data: {source: synthetic, samples: 256, teacher_hidden: 8}
parallel: {zero: 1}
)";

struct RankResult {
  Status status;
  TrainSummary summary;
  std::vector<float> params;
};

RankResult RunRank(const Config& config, std::shared_ptr<Store> store, int rank, bool poison) {
  RankResult out;
  ShmOptions opt;
  opt.op_timeout = kOpTimeout;
  opt.bootstrap_timeout = kOpTimeout;
  auto world = ShmCommunicator::Create(std::move(store), rank, kRanks, opt);
  if (!world.ok()) {
    out.status = world.status();
    return out;
  }
  auto single = (*world)->SplitGroup(rank, 0);  // the tensor group: this rank alone
  if (!single.ok()) {
    out.status = single.status();
    return out;
  }
  auto trainer = Trainer::Create(config, {world->get(), world->get(), single->get()});
  if (!trainer.ok()) {
    out.status = trainer.status();
    return out;
  }
  if (poison) {
    (*trainer)->set_grad_hook([rank](int64_t step, float* g, int64_t n) {
      if (rank == 1 && step == kPoisonedStep && n > 0)
        g[n / 2] = std::numeric_limits<float>::infinity();
    });
  }
  auto s = (*trainer)->Run(kSteps, {});
  if (!s.ok()) {
    out.status = s.status();
    return out;
  }
  out.summary = *s;
  auto full = (*trainer)->FullParams();
  if (!full.ok()) {
    out.status = full.status();
    return out;
  }
  for (auto& [name, t] : *full)
    out.params.insert(out.params.end(), t.data<float>(), t.data<float>() + t.numel());
  return out;
}

std::vector<RankResult> RunJob(bool poison) {
  auto config = ParseConfig(kConfig, "fp16.yaml");
  EXPECT_TRUE(config.ok()) << config.status().message();
  auto store = std::make_shared<InMemoryStore>();
  std::vector<RankResult> results(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back(
        [&, r] { results[static_cast<size_t>(r)] = RunRank(*config, store, r, poison); });
  }
  for (auto& t : threads) t.join();
  return results;
}

TEST(TrainerFp16, AnOverflowInOneRanksPartitionSkipsTheStepEverywhere) {
  const std::vector<RankResult> clean = RunJob(false);
  const std::vector<RankResult> poisoned = RunJob(true);
  for (int r = 0; r < kRanks; ++r) {
    const RankResult& c = clean[static_cast<size_t>(r)];
    const RankResult& p = poisoned[static_cast<size_t>(r)];
    ASSERT_TRUE(c.status.ok()) << "rank " << r << ": " << c.status.ToString();
    ASSERT_TRUE(p.status.ok()) << "rank " << r << ": " << p.status.ToString();
    EXPECT_EQ(c.summary.skipped_steps, 0) << "rank " << r;
    EXPECT_EQ(c.summary.loss_scale, 1024) << "rank " << r;
    EXPECT_EQ(p.summary.skipped_steps, 1) << "rank " << r;
    EXPECT_EQ(p.summary.loss_scale, 512) << "rank " << r;  // backed off once
    EXPECT_EQ(p.summary.precision, "fp16");
  }
  // Both ranks hold the same model, and the skipped step changed it (one
  // update fewer than the clean run).
  EXPECT_EQ(poisoned[0].params, poisoned[1].params);
  EXPECT_EQ(clean[0].params, clean[1].params);
  EXPECT_NE(poisoned[0].params, clean[0].params);
}

}  // namespace
}  // namespace cohort
