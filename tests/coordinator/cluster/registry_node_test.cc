// The job registry, watch and leases through the client library against 3
// in-process Nodes: epochs and ranks, checkpoint commit, epoch fencing before
// and after a leader failover, server-side watch (wake-up, timeout, prefix,
// across a failover), and leases (expiry by the leader, keepalive and revoke
// across a failover).
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "tests/coordinator/cluster/cluster_fixture.h"

namespace cohort::coordinator {
namespace {

const MemberInfo* FindMember(const JobInfo& job, const std::string& id) {
  for (const MemberInfo& m : job.members) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

TEST_F(ClusterTest, RegistryEpochsCheckpointsAndFencingAcrossFailover) {
  for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
  auto c = MakeClient();
  ASSERT_TRUE(c->Join("w0", "10.0.0.1:9000", 0).ok());
  ASSERT_TRUE(c->Join("w1", "10.0.0.2:9000", 0).ok());
  Result<uint64_t> e = c->CommitEpoch(0, {"w1", "w0"});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 1u);
  Result<JobInfo> job = c->GetJob();
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->epoch, 1u);
  EXPECT_EQ(job->ranks, (std::vector<std::string>{"w1", "w0"}));
  ASSERT_NE(FindMember(*job, "w0"), nullptr);
  EXPECT_EQ(FindMember(*job, "w0")->rank, 1);
  EXPECT_EQ(FindMember(*job, "w0")->state, MemberState::kActive);
  EXPECT_EQ(FindMember(*job, "w0")->address, "10.0.0.1:9000");
  EXPECT_GT(FindMember(*job, "w0")->last_heartbeat_ms, 0u);  // the leader's clock
  ASSERT_TRUE(c->Heartbeat("w0", 1).ok());

  // Checkpoint: pending, then committed.
  Status none = c->CommitCheckpoint(1, 100);
  EXPECT_EQ(none.code(), StatusCode::kFailedPrecondition);
  // The refusal's reason crosses gRPC (trailing metadata) into the Status.
  EXPECT_EQ(RefusalOf(none), Refusal::kNoPendingCheckpoint) << none.ToString();
  ASSERT_TRUE(c->ProposeCheckpoint(1, 100, "/ckpt/100", "crc32c:abcd").ok());
  EXPECT_FALSE(c->GetJob()->last_checkpoint.has_value());
  ASSERT_TRUE(c->CommitCheckpoint(1, 100).ok());
  job = c->GetJob();
  ASSERT_TRUE(job->last_checkpoint.has_value());
  EXPECT_EQ(job->last_checkpoint->path, "/ckpt/100");
  EXPECT_EQ(job->last_checkpoint->epoch, 1u);

  // Epoch 2 drops w1; w1, still at epoch 1, cannot change the job.
  auto stale = MakeClient();
  ASSERT_EQ(ValueOr<uint64_t>(c->CommitEpoch(1, {"w0"}), 0), 2u);
  Status s = stale->Heartbeat("w1", 1);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(RefusalOf(s), Refusal::kStaleEpoch) << s.ToString();
  EXPECT_NE(s.message().find("stale epoch 1, job is at epoch 2"), std::string::npos)
      << s.ToString();
  EXPECT_EQ(RefusalOf(stale->CommitEpoch(1, {"w0", "w1"}).status()), Refusal::kStaleEpoch);
  EXPECT_EQ(stale->CommitEpoch(1, {"w0", "w1"}).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(stale->ProposeCheckpoint(1, 200, "/ckpt/200", "x").code(),
            StatusCode::kFailedPrecondition);

  // Fail over: the new leader has the same job and fences the same way.
  raft::NodeId old = Leader(*c);
  ASSERT_NE(old, 0u);
  nodes_[old].reset();
  s = stale->Heartbeat("w1", 1);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(RefusalOf(s), Refusal::kStaleEpoch) << s.ToString();
  EXPECT_NE(s.message().find("stale epoch 1, job is at epoch 2"), std::string::npos)
      << s.ToString();
  job = c->GetJob();
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->epoch, 2u);
  EXPECT_EQ(job->ranks, std::vector<std::string>{"w0"});
  EXPECT_EQ(FindMember(*job, "w1")->state, MemberState::kLeft);
  ASSERT_TRUE(job->last_checkpoint.has_value());
  EXPECT_EQ(job->last_checkpoint->step, 100u);
  // More typed refusals: w1 left (it must join again), an unknown member, a
  // checkpoint that is not newer than the committed one.
  s = c->Heartbeat("w1", 2);
  EXPECT_EQ(RefusalOf(s), Refusal::kMustJoinAgain) << s.ToString();
  s = c->Heartbeat("nobody", 2);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_EQ(RefusalOf(s), Refusal::kUnknownMember) << s.ToString();
  s = c->ProposeCheckpoint(2, 100, "/ckpt/100b", "x");
  EXPECT_EQ(RefusalOf(s), Refusal::kCheckpointNotNewer) << s.ToString();
  // The current epoch still writes.
  ASSERT_TRUE(c->Join("w1", "10.0.0.2:9001", 2).ok());
  ASSERT_EQ(ValueOr<uint64_t>(c->CommitEpoch(2, {"w0", "w1"}), 0), 3u);
  // Status shows the job too (each node's applied view).
  raft::NodeId lead = Leader(*c);
  ASSERT_NE(lead, 0u);
  Result<NodeStatus> st = c->StatusOf(peers_[lead]);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->epoch, 3u);
  EXPECT_EQ(st->job.ranks.size(), 2u);
}

TEST_F(ClusterTest, WatchWakesTimesOutAndSurvivesFailover) {
  for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
  auto c = MakeClient();
  Result<PutResult> p = c->Put("job/a", "1");
  ASSERT_TRUE(p.ok());
  // after_revision 0: the current value at once.
  Result<WatchResult> w = c->Watch("job/a", false, 0, 5s);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_EQ(w->events[0].value, "1");
  EXPECT_EQ(w->events[0].mod_revision, p->revision);
  // Nothing after that revision: empty at the timeout.
  w = c->Watch("job/a", false, p->revision, 200ms);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE(w->events.empty());
  EXPECT_GE(w->revision, p->revision);

  // A watch waiting in another thread wakes when the key is written.
  auto watcher = MakeClient();
  uint64_t after = p->revision;
  auto pending =
      std::async(std::launch::async, [&] { return watcher->Watch("job/", true, after, 20s); });
  ASSERT_TRUE(c->Put("other", "x").ok());  // not under the prefix
  ASSERT_TRUE(c->Put("job/b", "2").ok());
  w = pending.get();
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_EQ(w->events[0].key, "job/b");
  EXPECT_EQ(w->events[0].value, "2");

  // Deletion is an event.
  uint64_t before_delete = w->events[0].mod_revision;
  ASSERT_TRUE(ValueOr(c->Delete("job/b"), false));
  w = c->Watch("job/b", false, before_delete, 5s);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_TRUE(w->events[0].deleted);

  // A watch in flight while the leader stops: retried at the new leader with
  // the same revision, it still sees the write.
  Result<WatchResult> cur = c->Watch("fw", false, 0, 0ms);
  ASSERT_TRUE(cur.ok());
  uint64_t rev = cur->revision;
  pending = std::async(std::launch::async, [&] { return watcher->Watch("fw", false, rev, 25s); });
  raft::NodeId old = Leader(*c);
  ASSERT_NE(old, 0u);
  nodes_[old].reset();
  ASSERT_TRUE(c->Put("fw", "after-failover").ok());
  w = pending.get();
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_EQ(w->events[0].value, "after-failover");
}

TEST_F(ClusterTest, LeasesExpireByTheLeaderAndSurviveFailover) {
  for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
  auto c = MakeClient();
  // A short lease nobody keeps alive: the leader expires it, its key goes.
  Result<uint64_t> l = c->GrantLease(300ms);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  Result<PutResult> p = c->Put("alive/w0", "x", *l);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_TRUE(c->Put("plain", "stays").ok());
  Result<WatchResult> w = c->Watch("alive/w0", false, p->revision, 20s);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_EQ(w->events.size(), 1u);
  EXPECT_TRUE(w->events[0].deleted);
  EXPECT_FALSE(c->Get("alive/w0")->has_value());
  EXPECT_EQ(c->Get("plain")->value_or(""), "stays");
  EXPECT_EQ(c->KeepAlive(*l).code(), StatusCode::kNotFound);
  EXPECT_EQ(c->Put("k", "v", *l).status().code(), StatusCode::kNotFound);

  // A long lease survives a failover (the new leader waits a TTL before it
  // expires anything), is kept alive through the new leader, then revoked.
  Result<uint64_t> l2 = c->GrantLease(60s);
  ASSERT_TRUE(l2.ok());
  ASSERT_TRUE(c->Put("alive/w1", "y", *l2).ok());
  raft::NodeId old = Leader(*c);
  ASSERT_NE(old, 0u);
  nodes_[old].reset();
  ASSERT_TRUE(c->KeepAlive(*l2).ok());
  EXPECT_EQ(c->Get("alive/w1")->value_or(""), "y");
  ASSERT_TRUE(c->RevokeLease(*l2).ok());
  EXPECT_FALSE(c->Get("alive/w1")->has_value());
}

}  // namespace
}  // namespace cohort::coordinator
