// The replicated key-value state machine: put/get/cas and at-most-once
// application of retried writes (dissertation 6.3).

#include <gtest/gtest.h>

#include "coordinator/kv/kv_state_machine.h"
#include "coordinator/raft/limits.h"

namespace cohort::coordinator {
namespace {

KvCommand Put(uint64_t client, uint64_t seq, std::string k, std::string v) {
  KvCommand c;
  c.op = KvCommand::Op::kPut;
  c.client_id = client;
  c.seq = seq;
  c.key = std::move(k);
  c.value = std::move(v);
  return c;
}

KvCommand Cas(uint64_t client, uint64_t seq, std::string k, std::optional<std::string> expected,
              std::string v) {
  KvCommand c = Put(client, seq, std::move(k), std::move(v));
  c.op = KvCommand::Op::kCas;
  c.expected = std::move(expected);
  return c;
}

TEST(Kv, PutGetCas) {
  KvStateMachine kv;
  EXPECT_EQ(kv.Get("a"), std::nullopt);
  KvResult r = kv.Apply(1, Put(1, 1, "a", "x"));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.previous, std::nullopt);
  EXPECT_EQ(kv.Get("a"), "x");
  r = kv.Apply(2, Cas(1, 2, "a", "y", "z"));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.previous, "x");
  EXPECT_EQ(kv.Get("a"), "x");
  r = kv.Apply(3, Cas(1, 3, "a", "x", "z"));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(kv.Get("a"), "z");
  r = kv.Apply(4, Cas(1, 4, "b", std::nullopt, "new"));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(kv.Get("b"), "new");
}

TEST(Kv, RetriedWriteAppliesAtMostOnce) {
  // Dissertation 6.3: the same (client, seq) applied twice returns the first
  // result and does not apply again.
  KvStateMachine kv;
  kv.Apply(1, Put(7, 1, "k", "v1"));
  KvResult first = kv.Apply(2, Cas(7, 2, "k", "v1", "v2"));
  ASSERT_TRUE(first.ok);
  kv.Apply(3, Put(8, 1, "k", "other"));
  KvResult retry = kv.Apply(4, Cas(7, 2, "k", "v1", "v2"));
  EXPECT_TRUE(retry.duplicate);
  EXPECT_TRUE(retry.ok);
  EXPECT_EQ(retry.previous, "v1");
  EXPECT_EQ(kv.Get("k"), "other");  // not applied again
  KvResult stale = kv.Apply(5, Put(7, 1, "k", "old"));
  EXPECT_TRUE(stale.stale);
  EXPECT_EQ(kv.Get("k"), "other");
}

TEST(Kv, SnapshotRoundTripKeepsSessions) {
  KvStateMachine kv;
  kv.Apply(1, Put(1, 1, "a", "x"));
  kv.Apply(2, Put(2, 5, "b", "y"));
  KvStateMachine copy;
  ASSERT_TRUE(copy.Restore(kv.Serialize()).ok());
  EXPECT_EQ(copy.Get("a"), "x");
  EXPECT_EQ(copy.Get("b"), "y");
  EXPECT_TRUE(copy.Apply(3, Put(2, 5, "b", "zzz")).duplicate);
  EXPECT_EQ(copy.Get("b"), "y");
  EXPECT_EQ(copy.Serialize(), kv.Serialize());
}

TEST(Kv, SessionsAreBounded) {
  KvStateMachine kv;
  for (uint64_t c = 1; c <= raft::limits::kMaxClientSessions + 10; ++c)
    kv.Apply(c, Put(c, 1, "k", "v"));
  EXPECT_EQ(kv.sessions(), raft::limits::kMaxClientSessions);
}

TEST(Kv, BadBytesAreErrorsNotCrashes) {
  EXPECT_FALSE(KvCommand::Decode("garbage").ok());
  EXPECT_FALSE(KvCommand::Decode("").ok());
  KvStateMachine kv;
  EXPECT_EQ(kv.Restore("xx").code(), StatusCode::kDataLoss);
  KvCommand c = Cas(1, 2, "key", "exp", "val");
  Result<KvCommand> d = KvCommand::Decode(c.Encode());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->expected, "exp");
  EXPECT_EQ(d->value, "val");
}

}  // namespace
}  // namespace cohort::coordinator
