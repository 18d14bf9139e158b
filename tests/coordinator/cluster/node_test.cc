// In-process tests of the coordinator's RPC layer: protobuf conversion and a
// 3-node cluster of real Nodes on 127.0.0.1 driven through the
// client library (leader discovery, redirects, at-most-once writes, token
// check, failover, catch-up through a snapshot).
#include "coordinator/server/node.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "coordinator/client/client.h"
#include "coordinator/server/convert.h"
#include "tests/coordinator/cluster/cluster_fixture.h"

namespace cohort::coordinator {
namespace {

using namespace std::chrono_literals;

TEST(Convert, MessageRoundTrip) {
  raft::Message m;
  m.type = raft::MessageType::kSnap;
  m.from = 2;
  m.to = 3;
  m.term = 7;
  m.log_term = 6;
  m.index = 41;
  m.entries = {{6, 42, raft::EntryType::kNormal, "a"},
               {7, 43, raft::EntryType::kConfChange, std::string("\0b", 2)}};
  m.commit = 40;
  m.reject = true;
  m.reject_hint = 39;
  m.context = 99;
  raft::Snapshot snap;
  snap.meta.index = 40;
  snap.meta.term = 6;
  snap.meta.conf.voters = {1, 2, 3};
  snap.data = "state";
  m.snapshot = snap;
  pb::Message p;
  ToProto(m, &p);
  std::string wire = p.SerializeAsString();
  pb::Message q;
  ASSERT_TRUE(q.ParseFromString(wire));
  Result<raft::Message> back = FromProto(q);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->type, m.type);
  EXPECT_EQ(back->from, m.from);
  EXPECT_EQ(back->to, m.to);
  EXPECT_EQ(back->term, m.term);
  EXPECT_EQ(back->log_term, m.log_term);
  EXPECT_EQ(back->index, m.index);
  EXPECT_EQ(back->entries, m.entries);
  EXPECT_EQ(back->commit, m.commit);
  EXPECT_EQ(back->reject, m.reject);
  EXPECT_EQ(back->reject_hint, m.reject_hint);
  EXPECT_EQ(back->context, m.context);
  ASSERT_TRUE(back->snapshot.has_value());
  EXPECT_EQ(*back->snapshot, *m.snapshot);

  raft::Message plain;  // no snapshot stays no snapshot
  pb::Message pp;
  ToProto(plain, &pp);
  EXPECT_FALSE(FromProto(pp)->snapshot.has_value());
  pp.set_type(static_cast<pb::MessageType>(77));
  EXPECT_EQ(FromProto(pp).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ClusterTest, WritesReadsFailoverAndCatchUp) {
  for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
  auto c = MakeClient();
  for (int i = 0; i < 20; ++i) {
    Result<PutResult> r = c->Put("k" + std::to_string(i), "v" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  Result<std::optional<std::string>> g = c->Get("k3");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->value_or("<absent>"), "v3");
  EXPECT_FALSE(c->Get("absent")->has_value());

  Result<CasResult> cas = c->Cas("k1", std::string("v1"), "w1");
  ASSERT_TRUE(cas.ok());
  EXPECT_TRUE(cas->swapped);
  cas = c->Cas("k1", std::string("v1"), "x1");
  ASSERT_TRUE(cas.ok());
  EXPECT_FALSE(cas->swapped);
  EXPECT_EQ(cas->previous.value_or(""), "w1");
  cas = c->Cas("new", std::nullopt, "created");
  ASSERT_TRUE(cas.ok());
  EXPECT_TRUE(cas->swapped);

  // Wrong token: refused, not retried.
  auto intruder = MakeClient("wrong");
  EXPECT_EQ(intruder->Put("k", "v").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(intruder->Get("k").status().code(), StatusCode::kPermissionDenied);

  // At most once: a second client with the same id re-sending seq 1 gets the
  // first answer, and the state does not change.
  auto a = MakeClient("tok", 4242);
  auto b = MakeClient("tok", 4242);
  ASSERT_TRUE(a->Put("once", "first").ok());
  Result<PutResult> dup = b->Put("once", "second");  // same (client, seq = 1)
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(c->Get("once")->value_or(""), "first");

  // Failover: stop the leader; a write succeeds through the others.
  raft::NodeId old = Leader(*c);
  ASSERT_NE(old, 0u);
  nodes_[old].reset();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c->Put("after", "failover").ok());
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("failover (in-process, graceful stop of the leader): %lld ms\n",
              static_cast<long long>(ms));
  for (int i = 20; i < 40; ++i) ASSERT_TRUE(c->Put("k" + std::to_string(i), "v").ok());

  // The old leader restarts behind a compacted log: it catches up (snapshot).
  StartNode(old);
  Result<NodeStatus> leader_view = c->StatusOf(peers_[Leader(*c)]);
  ASSERT_TRUE(leader_view.ok());
  uint64_t target = leader_view->commit_index;
  EXPECT_GT(leader_view->snapshot_index, 0u);
  uint64_t applied = 0;
  for (int i = 0; i < 100 && applied < target; ++i) {
    std::this_thread::sleep_for(100ms);
    Result<NodeStatus> s = c->StatusOf(peers_[old]);
    if (s.ok()) applied = s->applied_index;
  }
  EXPECT_GE(applied, target);
  EXPECT_EQ(c->Get("k5")->value_or(""), "v5");
}

TEST_F(ClusterTest, PortInUseIsAnError) {
  StartNode(1);
  NodeOptions o;
  o.id = 2;
  o.peers = peers_;
  o.listen_address = peers_[1];  // taken by node 1
  o.data_dir = (dir_ / "n2").string();
  o.token = "tok";
  Result<std::unique_ptr<Node>> n = Node::Start(o);
  EXPECT_FALSE(n.ok());
}

}  // namespace
}  // namespace cohort::coordinator
