// CoordinatorCommitter and the committed-checkpoint list against a real
// single-node coordinator (EmbeddedCoordinator) in this process: commit,
// epoch fencing, a step that is not newer, the bounded history, and
// CoordinatorVerdict for `cohort ckpt inspect --coordinator`.
#include "runtime/elastic/committer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "coordinator/client/client.h"
#include "coordinator/server/embedded.h"
#include "runtime/checkpoint.h"

namespace cohort::elastic {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kParams = 4 * 3 + 3 + 3 * 2 + 2;  // layers {4, 3, 2}

class RegistryTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("cohort-ckpt-registry-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    coordinator::EmbeddedOptions eo;
    eo.data_dir = (root_ / "coord").string();
    eo.token = "secret";
    auto e = coordinator::EmbeddedCoordinator::Start(eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    coord_ = std::move(*e);
    options_.endpoints = {coord_->address()};
    options_.token = "secret";
    auto c = coordinator::Client::Create(options_);
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
    ASSERT_TRUE(client_->Join("w0", "127.0.0.1:1", 0).ok());
    auto e1 = client_->CommitEpoch(0, {"w0"});
    ASSERT_TRUE(e1.ok() && *e1 == 1u) << e1.status().ToString();
  }
  void TearDown() override {
    client_.reset();
    coord_.reset();
    fs::remove_all(root_);
  }
  // A one-rank checkpoint at `step`, committed through `committer`.
  Result<bool> Write(int64_t step, CheckpointCommitter* committer) {
    CheckpointLayout l;
    l.step = step;
    l.model.layers = {4, 3, 2};
    l.optimizer = "sgd";
    l.config_hash = "1";
    CheckpointShard sh;
    Tensor p = Tensor::Zeros({kParams});
    p.data<float>()[0] = static_cast<float>(step);
    sh.tensors.emplace_back("param", p);
    sh.tensors.emplace_back("optim.momentum", Tensor::Zeros({kParams}));
    CheckpointWriter w;
    w.Submit(dir(), l, std::move(sh));
    COHORT_ASSIGN_OR_RETURN(ShardWritten s, w.Wait());
    return CommitCheckpoint(dir(), l, {s}, /*keep=*/0, committer);
  }
  std::string dir() const { return (root_ / "ckpt").string(); }

  fs::path root_;
  std::unique_ptr<coordinator::EmbeddedCoordinator> coord_;
  coordinator::ClientOptions options_;
  std::unique_ptr<coordinator::Client> client_;
};

TEST_F(RegistryTest, CommitsFencesAndRemembers) {
  int64_t count = 0;
  auto committer = CoordinatorCommitter::Create(options_, "job", 1, &count);
  ASSERT_TRUE(committer.ok());
  auto r = Write(10, committer->get());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(*r);
  r = Write(20, committer->get());
  ASSERT_TRUE(r.ok() && *r);
  EXPECT_EQ(count, 2);
  auto job = client_->GetJob();
  ASSERT_TRUE(job.ok() && job->last_checkpoint);
  EXPECT_EQ(job->last_checkpoint->step, 20u);
  auto list = ListCommittedCheckpoints(*client_, "job");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].step, 20);  // newest first
  EXPECT_EQ((*list)[1].step, 10);
  EXPECT_EQ((*list)[1].checksum, *ReadManifestChecksum(CheckpointStepDir(dir(), 10)));
  EXPECT_EQ(CoordinatorVerdict(*list, CheckpointStepDir(dir(), 10)), "committed");

  // A step that is not after the last committed one is declined, harmlessly.
  r = Write(15, committer->get());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(*r);
  EXPECT_FALSE(fs::exists(CheckpointStepDir(dir(), 15) + "/MANIFEST.json"));
  EXPECT_EQ(CoordinatorVerdict(*list, CheckpointStepDir(dir(), 15)), "no");

  // Epoch 2 is committed: the rank 0 of epoch 1 is refused (Aborted: the
  // epoch ends, not the job) and its checkpoint is not committed.
  auto e2nd = client_->CommitEpoch(1, {"w0"});
  ASSERT_TRUE(e2nd.ok() && *e2nd == 2u) << e2nd.status().ToString();
  r = Write(30, committer->get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAborted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("stale epoch"), std::string::npos) << r.status().message();
  EXPECT_EQ(coordinator::RefusalOf(r.status()), coordinator::Refusal::kStaleEpoch);
  EXPECT_FALSE(fs::exists(CheckpointStepDir(dir(), 30) + "/MANIFEST.json"));
  job = client_->GetJob();
  EXPECT_EQ(job->last_checkpoint->step, 20u);
  list = ListCommittedCheckpoints(*client_, "job");
  ASSERT_EQ(list->size(), 2u);
  // The restore path reads only what the coordinator committed.
  std::vector<std::string> warnings;
  auto ck = LoadNewestCommitted(*list, &warnings);
  ASSERT_TRUE(ck.ok());
  EXPECT_EQ(ck->layout.step, 20);
  EXPECT_EQ(count, 2);

  // The history is bounded; the newest stay.
  auto e2 = CoordinatorCommitter::Create(options_, "job", 2, &count);
  ASSERT_TRUE(e2.ok());
  CheckpointLayout l;
  for (int64_t step = 100; step < 100 + static_cast<int64_t>(kMaxCommittedHistory) + 3; ++step) {
    l.step = step;
    auto c = (*e2)->Commit(l, (root_ / ("x" + std::to_string(step))).string(), "crc32c:00000001");
    ASSERT_TRUE(c.ok() && *c) << c.status().ToString();
  }
  list = ListCommittedCheckpoints(*client_, "job");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), kMaxCommittedHistory);
  EXPECT_EQ(list->front().step, 100 + static_cast<int64_t>(kMaxCommittedHistory) + 2);
}

}  // namespace
}  // namespace cohort::elastic
