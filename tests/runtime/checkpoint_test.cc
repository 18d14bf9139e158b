// Checkpoint commit through a CheckpointCommitter, and restore from what it
// committed only.
#include "runtime/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/file_util.h"
#include "runtime/config.h"

namespace cohort {
namespace {

namespace fs = std::filesystem;

const std::vector<int64_t> kLayers = {4, 3, 2};
constexpr int64_t kParams = 4 * 3 + 3 + 3 * 2 + 2;

// Records what it was asked to commit, answers as told.
class FakeCommitter final : public CheckpointCommitter {
 public:
  Result<bool> answer = true;
  std::vector<CommittedCheckpoint> committed;
  Result<bool> Commit(const CheckpointLayout& layout, const std::string& step_dir,
                      const std::string& checksum) override {
    if (answer.ok() && *answer) committed.push_back({layout.step, step_dir, checksum});
    return answer;
  }
};

std::string FreshDir(const std::string& name) {
  const std::string d = testing::TempDir() + "/cohort_ckpt_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Writes a one-rank checkpoint at `step` whose parameters are all `value`,
// and hands it to CommitCheckpoint with `committer`.
Result<bool> WriteStep(const std::string& dir, int64_t step, float value,
                       CheckpointCommitter* committer) {
  CheckpointLayout l;
  l.step = step;
  l.model.layers = kLayers;
  l.optimizer = "sgd";
  l.optimizer_steps = step;
  l.config_hash = "1";
  CheckpointShard sh;
  Tensor p = Tensor::Zeros({kParams});
  Tensor m = Tensor::Zeros({kParams});
  std::fill(p.data<float>(), p.data<float>() + kParams, value);
  std::fill(m.data<float>(), m.data<float>() + kParams, -value);
  sh.tensors.emplace_back("param", p);
  sh.tensors.emplace_back("optim.momentum", m);
  CheckpointWriter w;
  w.Submit(dir, l, std::move(sh));
  COHORT_ASSIGN_OR_RETURN(ShardWritten s, w.Wait());
  return CommitCheckpoint(dir, l, {s}, /*keep=*/0, committer);
}

TEST(CheckpointCommit, TheCommitterSeesTheManifestChecksum) {
  const std::string dir = FreshDir("commit");
  FakeCommitter c;
  auto r = WriteStep(dir, 10, 1.0f, &c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(*r);
  ASSERT_EQ(c.committed.size(), 1u);
  EXPECT_EQ(c.committed[0].step, 10);
  EXPECT_EQ(c.committed[0].path, CheckpointStepDir(dir, 10));
  auto sum = ReadManifestChecksum(CheckpointStepDir(dir, 10));
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, c.committed[0].checksum);
  EXPECT_EQ(sum->rfind("crc32c:", 0), 0u);
}

TEST(CheckpointCommit, DeclinedOrRefusedLeavesNoManifest) {
  const std::string dir = FreshDir("declined");
  FakeCommitter c;
  c.answer = false;
  auto r = WriteStep(dir, 10, 1.0f, &c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(*r);
  EXPECT_FALSE(fs::exists(CheckpointStepDir(dir, 10) + "/MANIFEST.json"));
  c.answer = Aborted("stale epoch 3, job is at epoch 4");
  r = WriteStep(dir, 20, 2.0f, &c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAborted);
  EXPECT_FALSE(fs::exists(CheckpointStepDir(dir, 20) + "/MANIFEST.json"));
  auto all = ListCheckpoints(dir);
  ASSERT_TRUE(all.ok());
  for (const auto& info : *all) EXPECT_FALSE(info.committed) << info.path;
}

TEST(CheckpointCommit, RestoresOnlyWhatWasCommittedAndSkipsDamage) {
  const std::string dir = FreshDir("restore");
  FakeCommitter c;
  for (int64_t step : {10, 20, 30})
    ASSERT_TRUE(WriteStep(dir, step, static_cast<float>(step), &c).ok());
  // A newer checkpoint with a MANIFEST.json that the committer never saw.
  ASSERT_TRUE(WriteStep(dir, 40, 40.0f, nullptr).ok());
  std::vector<std::string> warnings;
  auto ck = LoadNewestCommitted(c.committed, &warnings);
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  EXPECT_EQ(ck->layout.step, 30);
  EXPECT_FLOAT_EQ(ck->params[0], 30.0f);
  EXPECT_FLOAT_EQ(ck->optim.at("momentum")[5], -30.0f);
  EXPECT_TRUE(warnings.empty());
  // The mpirun path (MANIFEST.json is the commit) would take step 40.
  auto latest = LoadLatestCheckpoint(dir, nullptr);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->layout.step, 40);

  // Damage one byte of step 30's shard: step 20 is used, with a warning.
  const std::string shard = CheckpointStepDir(dir, 30) + "/" + CheckpointShardName(0);
  auto bytes = ReadFile(shard);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[bytes->size() - 3] ^= 0x40;
  ASSERT_TRUE(WriteFileAtomic(shard, *bytes).ok());
  warnings.clear();
  ck = LoadNewestCommitted(c.committed, &warnings);
  ASSERT_TRUE(ck.ok()) << ck.status().ToString();
  EXPECT_EQ(ck->layout.step, 20);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("damaged"), std::string::npos) << warnings[0];

  // A committed checksum that no longer matches its MANIFEST.json (the
  // directory was rewritten after the commit): skipped too.
  auto list = c.committed;
  list[1].checksum = "crc32c:00000000";
  warnings.clear();
  ck = LoadNewestCommitted(list, &warnings);
  ASSERT_TRUE(ck.ok());
  EXPECT_EQ(ck->layout.step, 10);
  EXPECT_EQ(warnings.size(), 2u);

  EXPECT_EQ(LoadNewestCommitted({}, nullptr).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace cohort
