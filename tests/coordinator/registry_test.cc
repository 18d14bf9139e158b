// The job registry, leases and revisions of the replicated state machine
// (kv/kv_state_machine.h): members, epoch commits with rank assignment, epoch
// fencing, checkpoint pending -> commit rules, lease expiry deleting keys,
// per-key revisions, snapshots, and at-most-once on a retried sequence number.
// Every command is applied directly, as the Raft thread would: deterministic.

#include <gtest/gtest.h>

#include "coordinator/kv/kv_state_machine.h"
#include "coordinator/raft/limits.h"

namespace cohort::coordinator {
namespace {

// Builds commands with increasing sequence numbers for one client.
class Writer {
 public:
  explicit Writer(uint64_t client) : client_(client) {}
  KvCommand Next(KvCommand::Op op) {
    KvCommand c;
    c.op = op;
    c.client_id = client_;
    c.seq = ++seq_;
    return c;
  }
  KvCommand Put(std::string k, std::string v, uint64_t lease = 0) {
    KvCommand c = Next(KvCommand::Op::kPut);
    c.key = std::move(k);
    c.value = std::move(v);
    c.lease = lease;
    return c;
  }
  KvCommand Join(std::string member, uint64_t epoch, uint64_t now_ms = 1000) {
    KvCommand c = Next(KvCommand::Op::kJoin);
    c.member = std::move(member);
    c.address = "10.0.0.1:" + std::to_string(seq_);
    c.epoch = epoch;
    c.now_ms = now_ms;
    return c;
  }
  KvCommand Member(KvCommand::Op op, std::string member, uint64_t epoch, uint64_t now_ms = 0) {
    KvCommand c = Next(op);
    c.member = std::move(member);
    c.epoch = epoch;
    c.now_ms = now_ms;
    return c;
  }
  KvCommand CommitEpoch(uint64_t epoch, std::vector<std::string> members) {
    KvCommand c = Next(KvCommand::Op::kCommitEpoch);
    c.epoch = epoch;
    c.members = std::move(members);
    return c;
  }
  KvCommand Checkpoint(KvCommand::Op op, uint64_t epoch, uint64_t step, std::string path = "",
                       std::string sum = "") {
    KvCommand c = Next(op);
    c.epoch = epoch;
    c.step = step;
    c.key = std::move(path);
    c.value = std::move(sum);
    return c;
  }
  KvCommand Lease(KvCommand::Op op, uint64_t lease, uint64_t now_ms, uint64_t ttl_ms = 0) {
    KvCommand c = Next(op);
    c.lease = lease;
    c.now_ms = now_ms;
    c.ttl_ms = ttl_ms;
    return c;
  }

 private:
  uint64_t client_;
  uint64_t seq_ = 0;
};

KvCommand Expire(uint64_t lease, uint64_t now_ms) {
  KvCommand c;
  c.op = KvCommand::Op::kLeaseExpire;
  c.lease = lease;
  c.now_ms = now_ms;
  return c;  // client id 0: leader-proposed
}

class Registry : public ::testing::Test {
 protected:
  KvResult Apply(const KvCommand& c) { return sm_.Apply(++index_, c); }
  KvStateMachine sm_;
  uint64_t index_ = 0;
};

TEST_F(Registry, JoinAndCommitEpochAssignsRanks) {
  Writer w(1);
  EXPECT_EQ(sm_.epoch(), 0u);
  ASSERT_TRUE(Apply(w.Join("b", 0)).ok);
  ASSERT_TRUE(Apply(w.Join("a", 0)).ok);
  EXPECT_EQ(sm_.members().at("a").state, MemberState::kJoining);
  EXPECT_EQ(sm_.members().at("a").last_heartbeat_ms, 1000u);
  KvResult r = Apply(w.CommitEpoch(0, {"b", "a"}));
  ASSERT_EQ(r.code, StatusCode::kOk) << r.error;
  EXPECT_EQ(r.id, 1u);
  EXPECT_EQ(sm_.epoch(), 1u);
  EXPECT_EQ(sm_.ranks(), (std::vector<std::string>{"b", "a"}));  // b is rank 0, a rank 1
  EXPECT_EQ(sm_.members().at("a").state, MemberState::kActive);

  // Epoch 2 without b, with a newcomer c: b leaves the job.
  ASSERT_TRUE(Apply(w.Join("c", 1)).ok);
  r = Apply(w.CommitEpoch(1, {"a", "c"}));
  ASSERT_EQ(r.code, StatusCode::kOk) << r.error;
  EXPECT_EQ(sm_.epoch(), 2u);
  EXPECT_EQ(sm_.members().at("b").state, MemberState::kLeft);
  EXPECT_EQ(sm_.epoch_history().at(1), (std::vector<std::string>{"b", "a"}));

  // Only joining or active members may be in an epoch.
  ASSERT_TRUE(Apply(w.Member(KvCommand::Op::kFail, "c", 2)).ok);
  r = Apply(w.CommitEpoch(2, {"a", "c"}));
  EXPECT_EQ(r.code, StatusCode::kFailedPrecondition);
  EXPECT_NE(r.error.find("failed"), std::string::npos) << r.error;
  EXPECT_EQ(Apply(w.CommitEpoch(2, {"a", "a"})).code, StatusCode::kInvalidArgument);
  EXPECT_EQ(Apply(w.CommitEpoch(2, {"zz"})).code, StatusCode::kFailedPrecondition);
  EXPECT_EQ(sm_.epoch(), 2u);
}

TEST_F(Registry, StaleEpochIsFenced) {
  Writer w(1), stale(2);
  ASSERT_TRUE(Apply(w.Join("a", 0)).ok);
  ASSERT_TRUE(Apply(w.Join("b", 0)).ok);
  ASSERT_TRUE(Apply(w.CommitEpoch(0, {"a", "b"})).ok);
  ASSERT_TRUE(Apply(w.CommitEpoch(1, {"a"})).ok);  // epoch 2 without b
  // b still believes it is in epoch 1: none of its job writes get through.
  for (KvCommand c :
       {stale.Member(KvCommand::Op::kHeartbeat, "b", 1, 5000),
        stale.Member(KvCommand::Op::kLeave, "a", 1), stale.CommitEpoch(1, {"a", "b"}),
        stale.Checkpoint(KvCommand::Op::kProposeCheckpoint, 1, 10, "/ckpt/10", "c")}) {
    KvResult r = Apply(c);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.code, StatusCode::kFailedPrecondition);
    EXPECT_EQ(r.error.rfind("stale epoch 1, job is at epoch 2", 0), 0u) << r.error;
  }
  EXPECT_EQ(sm_.epoch(), 2u);
  EXPECT_EQ(sm_.ranks(), std::vector<std::string>{"a"});
  EXPECT_EQ(sm_.members().at("a").state, MemberState::kActive);
  EXPECT_TRUE(sm_.pending_checkpoints().empty());
  // An epoch from the future is refused too.
  EXPECT_EQ(Apply(stale.Member(KvCommand::Op::kHeartbeat, "a", 7)).code,
            StatusCode::kFailedPrecondition);
  // The current epoch works.
  KvResult hb = Apply(w.Member(KvCommand::Op::kHeartbeat, "a", 2, 9000));
  EXPECT_TRUE(hb.ok) << hb.error;
  EXPECT_EQ(sm_.members().at("a").last_heartbeat_ms, 9000u);
  // A removed member must join again before it heartbeats.
  EXPECT_EQ(Apply(w.Member(KvCommand::Op::kHeartbeat, "b", 2)).code,
            StatusCode::kFailedPrecondition);
}

// Every refusal names its typed reason (callers switch on it, never on the
// message). Each row applies its command to the same job: a member "a" in
// epoch 2 with a committed checkpoint at step 10, "b" failed, "c" left.
TEST_F(Registry, RefusalsAreTyped) {
  Writer w(1);
  ASSERT_TRUE(Apply(w.Join("a", 0)).ok);
  ASSERT_TRUE(Apply(w.Join("b", 0)).ok);
  ASSERT_TRUE(Apply(w.Join("c", 0)).ok);
  ASSERT_TRUE(Apply(w.CommitEpoch(0, {"a", "b", "c"})).ok);
  ASSERT_TRUE(Apply(w.CommitEpoch(1, {"a", "b"})).ok);  // c dropped: left
  ASSERT_TRUE(Apply(w.Member(KvCommand::Op::kFail, "b", 2)).ok);
  ASSERT_TRUE(Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 2, 10, "/c/10", "s")).ok);
  ASSERT_TRUE(Apply(w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 2, 10)).ok);
  auto add = [&](std::string delta) {
    KvCommand c = w.Next(KvCommand::Op::kAdd);
    c.key = "n";
    c.value = std::move(delta);
    return c;
  };
  struct Row {
    const char* name;
    KvCommand cmd;
    StatusCode code;
    Refusal refusal;
  };
  const Row rows[] = {
      // built in order: sequence numbers increase down the table
      {"stale heartbeat", w.Member(KvCommand::Op::kHeartbeat, "a", 1),
       StatusCode::kFailedPrecondition, Refusal::kStaleEpoch},
      {"stale commit", w.CommitEpoch(0, {"a"}), StatusCode::kFailedPrecondition,
       Refusal::kStaleEpoch},
      {"future epoch", w.Member(KvCommand::Op::kLeave, "a", 9), StatusCode::kFailedPrecondition,
       Refusal::kEpochAhead},
      {"failed heartbeats", w.Member(KvCommand::Op::kHeartbeat, "b", 2),
       StatusCode::kFailedPrecondition, Refusal::kMustJoinAgain},
      {"left heartbeats", w.Member(KvCommand::Op::kHeartbeat, "c", 2),
       StatusCode::kFailedPrecondition, Refusal::kMustJoinAgain},
      {"failed in epoch", w.CommitEpoch(2, {"a", "b"}), StatusCode::kFailedPrecondition,
       Refusal::kMustJoinAgain},
      {"unknown heartbeats", w.Member(KvCommand::Op::kHeartbeat, "zz", 2), StatusCode::kNotFound,
       Refusal::kUnknownMember},
      {"unknown in epoch", w.CommitEpoch(2, {"a", "zz"}), StatusCode::kFailedPrecondition,
       Refusal::kUnknownMember},
      {"listed twice", w.CommitEpoch(2, {"a", "a"}), StatusCode::kInvalidArgument,
       Refusal::kInvalidCommand},
      {"no members", w.CommitEpoch(2, {}), StatusCode::kInvalidArgument, Refusal::kInvalidCommand},
      {"empty join", w.Join("", 2), StatusCode::kInvalidArgument, Refusal::kInvalidCommand},
      {"not newer", w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 2, 10, "/c/10b", "s"),
       StatusCode::kFailedPrecondition, Refusal::kCheckpointNotNewer},
      {"older", w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 2, 5, "/c/5", "s"),
       StatusCode::kFailedPrecondition, Refusal::kCheckpointNotNewer},
      {"not proposed", w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 2, 20),
       StatusCode::kFailedPrecondition, Refusal::kNoPendingCheckpoint},
      {"empty path", w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 2, 30),
       StatusCode::kInvalidArgument, Refusal::kInvalidCommand},
      {"unknown lease", w.Lease(KvCommand::Op::kLeaseKeepalive, 99, 0), StatusCode::kNotFound,
       Refusal::kUnknownLease},
      {"put on unknown lease", w.Put("k", "v", 99), StatusCode::kNotFound, Refusal::kUnknownLease},
      {"zero ttl", w.Lease(KvCommand::Op::kLeaseGrant, 0, 0, 0), StatusCode::kInvalidArgument,
       Refusal::kInvalidCommand},
      {"bad delta", add("x"), StatusCode::kInvalidArgument, Refusal::kInvalidCommand},
  };
  for (const Row& row : rows) {
    KvResult r = Apply(row.cmd);
    EXPECT_FALSE(r.ok) << row.name;
    EXPECT_EQ(r.code, row.code) << row.name << ": " << r.error;
    EXPECT_EQ(r.refusal, row.refusal) << row.name << ": " << r.error;
  }
  // Accepted commands carry no refusal.
  EXPECT_EQ(Apply(w.Member(KvCommand::Op::kHeartbeat, "a", 2)).refusal, Refusal::kNone);
  EXPECT_EQ(Apply(w.Put("k", "v")).refusal, Refusal::kNone);
  EXPECT_EQ(sm_.epoch(), 2u);
}

// A refusal answered again from the session table keeps its reason, also
// after the session was restored from a snapshot.
TEST_F(Registry, RefusalSurvivesRetryAndSnapshot) {
  Writer w(1);
  ASSERT_TRUE(Apply(w.Join("a", 0)).ok);
  ASSERT_TRUE(Apply(w.CommitEpoch(0, {"a"})).ok);
  KvCommand stale = w.Member(KvCommand::Op::kHeartbeat, "a", 0);
  EXPECT_EQ(Apply(stale).refusal, Refusal::kStaleEpoch);
  KvResult again = Apply(stale);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.refusal, Refusal::kStaleEpoch);
  KvStateMachine copy;
  ASSERT_TRUE(copy.Restore(sm_.Serialize()).ok());
  KvResult restored = copy.Apply(100, stale);
  EXPECT_TRUE(restored.duplicate);
  EXPECT_EQ(restored.refusal, Refusal::kStaleEpoch);
  EXPECT_EQ(restored.code, StatusCode::kFailedPrecondition);
}

TEST_F(Registry, CheckpointPendingThenCommit) {
  Writer w(1);
  ASSERT_TRUE(Apply(w.Join("a", 0)).ok);
  ASSERT_TRUE(Apply(w.CommitEpoch(0, {"a"})).ok);
  // Commit needs a pending one.
  KvResult r = Apply(w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 1, 100));
  EXPECT_EQ(r.code, StatusCode::kFailedPrecondition);
  EXPECT_FALSE(sm_.last_checkpoint().has_value());
  ASSERT_TRUE(
      Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 1, 100, "/ckpt/100", "crc:1")).ok);
  ASSERT_TRUE(
      Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 1, 200, "/ckpt/200", "crc:2")).ok);
  EXPECT_FALSE(sm_.last_checkpoint().has_value());  // pending is not committed
  r = Apply(w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 1, 100));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(*sm_.last_checkpoint(), (CheckpointManifest{1, 100, "/ckpt/100", "crc:1"}));
  EXPECT_EQ(sm_.pending_checkpoints().size(), 1u);
  // Not after the committed step: refused.
  EXPECT_EQ(Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 1, 50, "/ckpt/50", "x")).code,
            StatusCode::kFailedPrecondition);
  // A pending checkpoint of epoch 1 cannot commit in epoch 2.
  ASSERT_TRUE(Apply(w.CommitEpoch(1, {"a"})).ok);
  r = Apply(w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 2, 200));
  EXPECT_EQ(r.code, StatusCode::kFailedPrecondition);
  EXPECT_EQ(sm_.last_checkpoint()->step, 100u);
  ASSERT_TRUE(
      Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 2, 200, "/ckpt/200b", "crc:3")).ok);
  ASSERT_TRUE(Apply(w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 2, 200)).ok);
  EXPECT_EQ(*sm_.last_checkpoint(), (CheckpointManifest{2, 200, "/ckpt/200b", "crc:3"}));
}

TEST_F(Registry, LeaseExpiryAndRevokeDeleteKeys) {
  Writer w(1);
  KvResult g = Apply(w.Lease(KvCommand::Op::kLeaseGrant, 0, /*now_ms=*/1000, /*ttl_ms=*/500));
  ASSERT_TRUE(g.ok) << g.error;
  uint64_t lease = g.id;
  ASSERT_NE(lease, 0u);
  ASSERT_TRUE(Apply(w.Put("worker/a", "alive", lease)).ok);
  ASSERT_TRUE(Apply(w.Put("worker/b", "alive", lease)).ok);
  ASSERT_TRUE(Apply(w.Put("plain", "stays")).ok);
  EXPECT_EQ(Apply(w.Put("x", "y", 999)).code, StatusCode::kNotFound);
  EXPECT_TRUE(sm_.ExpiredLeases(1499, 10).empty());
  EXPECT_EQ(sm_.ExpiredLeases(1500, 10), std::vector<uint64_t>{lease});

  // Keepalive at 1400 moves the deadline to 1900: an expiry proposed with an
  // older view (now 1600) does nothing when it applies.
  ASSERT_TRUE(Apply(w.Lease(KvCommand::Op::kLeaseKeepalive, lease, 1400)).ok);
  uint64_t rev = sm_.revision();
  Apply(Expire(lease, 1600));
  EXPECT_EQ(sm_.Get("worker/a"), "alive");
  EXPECT_EQ(sm_.revision(), rev);
  // Past the deadline: both keys go at one new revision.
  Apply(Expire(lease, 1900));
  EXPECT_EQ(sm_.Get("worker/a"), std::nullopt);
  EXPECT_EQ(sm_.Get("worker/b"), std::nullopt);
  EXPECT_EQ(sm_.Get("plain"), "stays");
  EXPECT_EQ(sm_.revision(), rev + 1);
  EXPECT_TRUE(sm_.leases().empty());
  // Both deletions are one revision: a watch answer holds them together.
  bool more = true;
  EXPECT_EQ(sm_.Changes("worker/", true, rev, 1, &more).size(), 2u);
  EXPECT_FALSE(more);
  EXPECT_EQ(Apply(w.Lease(KvCommand::Op::kLeaseKeepalive, lease, 2000)).code,
            StatusCode::kNotFound);

  // Revoke.
  uint64_t l2 = Apply(w.Lease(KvCommand::Op::kLeaseGrant, 0, 3000, 10000)).id;
  ASSERT_TRUE(Apply(w.Put("k", "v", l2)).ok);
  ASSERT_TRUE(Apply(w.Put("k2", "v", l2)).ok);
  ASSERT_TRUE(Apply(w.Put("k2", "detached")).ok);  // re-put without the lease: detached
  ASSERT_TRUE(Apply(w.Lease(KvCommand::Op::kLeaseRevoke, l2, 3001)).ok);
  EXPECT_EQ(sm_.Get("k"), std::nullopt);
  EXPECT_EQ(sm_.Get("k2"), "detached");
  EXPECT_EQ(Apply(w.Lease(KvCommand::Op::kLeaseGrant, 0, 0, 0)).code, StatusCode::kInvalidArgument);
}

TEST_F(Registry, RevisionsAndChanges) {
  Writer w(1);
  ASSERT_TRUE(Apply(w.Put("job/a", "1")).ok);  // rev 1
  ASSERT_TRUE(Apply(w.Put("job/b", "1")).ok);  // rev 2
  ASSERT_TRUE(Apply(w.Put("other", "1")).ok);  // rev 3
  ASSERT_TRUE(Apply(w.Put("job/a", "2")).ok);  // rev 4
  EXPECT_EQ(sm_.revision(), 4u);
  EXPECT_EQ(sm_.Find("job/a")->mod_revision, 4u);
  EXPECT_EQ(sm_.Find("job/a")->create_revision, 1u);
  bool more = false;
  std::vector<KvEvent> ev = sm_.Changes("job/", true, 2, 100, &more);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].key, "job/a");
  EXPECT_EQ(ev[0].value, "2");
  EXPECT_EQ(ev[0].mod_revision, 4u);
  EXPECT_EQ(sm_.Changes("job/", true, 0, 100, &more).size(), 2u);
  // Truncated: the oldest change (job/b at 2), so watching on after it
  // (revision 2) still finds job/a.
  ev = sm_.Changes("job/", true, 0, 1, &more);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].key, "job/b");
  EXPECT_TRUE(more);
  EXPECT_EQ(sm_.Changes("job/", true, ev[0].mod_revision, 1, &more)[0].key, "job/a");
  EXPECT_FALSE(more);
  EXPECT_TRUE(sm_.Changes("job/a", false, 4, 100, &more).empty());
  // A failed swap changes nothing; a delete leaves a tombstone a watch sees.
  KvCommand cas = w.Put("job/a", "3");
  cas.op = KvCommand::Op::kCas;
  cas.expected = "nope";
  EXPECT_FALSE(Apply(cas).ok);
  EXPECT_EQ(sm_.revision(), 4u);
  KvCommand del = w.Next(KvCommand::Op::kDelete);
  del.key = "job/b";
  ASSERT_TRUE(Apply(del).ok);
  ev = sm_.Changes("job/b", false, 4, 100, &more);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_TRUE(ev[0].deleted);
  EXPECT_EQ(ev[0].mod_revision, 5u);
  // Add: a server-side counter.
  KvCommand add = w.Next(KvCommand::Op::kAdd);
  add.key = "n";
  add.value = "5";
  EXPECT_EQ(Apply(add).number, 5);
  add.seq = 100;
  add.value = "-2";
  EXPECT_EQ(Apply(add).number, 3);
  EXPECT_EQ(sm_.Get("n"), "3");
  ASSERT_TRUE(Apply(Writer(9).Put("word", "abc")).ok);
  add.seq = 200;
  add.key = "word";
  EXPECT_EQ(Apply(add).code, StatusCode::kInvalidArgument);  // not a counter
}

TEST_F(Registry, RetriedSequenceAppliesAtMostOnce) {
  Writer w(1);
  ASSERT_TRUE(Apply(w.Join("a", 0)).ok);
  KvCommand commit = w.CommitEpoch(0, {"a"});
  KvResult first = Apply(commit);
  ASSERT_TRUE(first.ok);
  // The retry of the same (client, seq) gets the first answer and does not
  // commit a second epoch (which, fenced, would be refused anyway).
  KvResult retry = Apply(commit);
  EXPECT_TRUE(retry.duplicate);
  EXPECT_TRUE(retry.ok);
  EXPECT_EQ(retry.id, 1u);
  EXPECT_EQ(sm_.epoch(), 1u);
  // A refusal is remembered as well.
  KvCommand stale = w.Member(KvCommand::Op::kHeartbeat, "a", 0);
  KvResult refused = Apply(stale);
  EXPECT_EQ(refused.code, StatusCode::kFailedPrecondition);
  KvResult again = Apply(stale);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.error, refused.error);
  // Lease grants too: a retried grant returns the same lease.
  KvCommand grant = w.Lease(KvCommand::Op::kLeaseGrant, 0, 10, 100);
  uint64_t id = Apply(grant).id;
  EXPECT_EQ(Apply(grant).id, id);
  EXPECT_EQ(sm_.leases().size(), 1u);
}

TEST_F(Registry, SnapshotRoundTrip) {
  Writer w(1);
  Apply(w.Join("a", 0, 111));
  Apply(w.Join("b", 0, 222));
  Apply(w.CommitEpoch(0, {"a", "b"}));
  Apply(w.Member(KvCommand::Op::kFail, "b", 1));
  Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 1, 10, "/c/10", "s10"));
  Apply(w.Checkpoint(KvCommand::Op::kCommitCheckpoint, 1, 10));
  Apply(w.Checkpoint(KvCommand::Op::kProposeCheckpoint, 1, 20, "/c/20", "s20"));
  uint64_t lease = Apply(w.Lease(KvCommand::Op::kLeaseGrant, 0, 1000, 500)).id;
  Apply(w.Put("leased", "v", lease));
  Apply(w.Put("gone", "v"));
  KvCommand del = w.Next(KvCommand::Op::kDelete);
  del.key = "gone";
  Apply(del);

  KvStateMachine copy;
  ASSERT_TRUE(copy.Restore(sm_.Serialize()).ok());
  EXPECT_EQ(copy.Serialize(), sm_.Serialize());
  EXPECT_EQ(copy.epoch(), 1u);
  EXPECT_EQ(copy.members(), sm_.members());
  EXPECT_EQ(copy.ranks(), sm_.ranks());
  EXPECT_EQ(copy.last_checkpoint(), sm_.last_checkpoint());
  EXPECT_EQ(copy.pending_checkpoints(), sm_.pending_checkpoints());
  EXPECT_EQ(copy.revision(), sm_.revision());
  bool more = false;
  EXPECT_EQ(copy.Changes("gone", false, 0, 10, &more).size(), 1u);  // the tombstone survived
  // The restored lease still owns its key, and the session table still answers.
  copy.Apply(100, Expire(lease, 2000));
  EXPECT_EQ(copy.Get("leased"), std::nullopt);
  EXPECT_TRUE(copy.Apply(101, del).duplicate);
  // Both replicas applying the same commands stay byte-identical.
  sm_.Apply(100, Expire(lease, 2000));
  EXPECT_EQ(copy.Serialize(), sm_.Serialize());
  EXPECT_EQ(copy.Restore("garbage").code(), StatusCode::kDataLoss);
}

TEST_F(Registry, CommandEncodingRoundTripAndOldFormat) {
  Writer w(3);
  KvCommand c = w.CommitEpoch(4, {"x", "y"});
  c.now_ms = 77;
  c.ttl_ms = 88;
  c.step = 99;
  Result<KvCommand> d = KvCommand::Decode(c.Encode());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->op, KvCommand::Op::kCommitEpoch);
  EXPECT_EQ(d->members, c.members);
  EXPECT_EQ(d->epoch, 4u);
  EXPECT_EQ(d->now_ms, 77u);
  // The put/cas encoding from before the registry still decodes.
  std::string old;
  old.push_back(0);                     // op put
  old.append("\x05\0\0\0\0\0\0\0", 8);  // client 5
  old.append("\x01\0\0\0\0\0\0\0", 8);  // seq 1
  old.append("\x01\0\0\0k", 5);         // key
  old.append("\x01\0\0\0v", 5);         // value
  old.push_back(0);                     // no expected
  Result<KvCommand> o = KvCommand::Decode(old);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->client_id, 5u);
  EXPECT_EQ(o->key, "k");
  old[0] = 4;  // a registry op in the old encoding is not a command
  EXPECT_FALSE(KvCommand::Decode(old).ok());
}

}  // namespace
}  // namespace cohort::coordinator
