// Transcript tests of the Raft rules. Each test names the section it checks:
// "paper" is Ongaro & Ousterhout, "In Search of an Understandable Consensus
// Algorithm" (2014); "dissertation" is Ongaro, "Consensus: Bridging Theory and
// Practice" (2014).

#include "coordinator/raft/raft.h"

#include <gtest/gtest.h>

#include "tests/coordinator/raft_harness.h"

namespace cohort::coordinator::raft {
namespace {

using testing::Cluster;
using testing::ClusterOptions;
using testing::LogWithTerms;
using Lines = std::vector<std::string>;

std::string Join(const Lines& l) {
  std::string s;
  for (const std::string& x : l) s += "  " + x + "\n";
  return s;
}
#define EXPECT_TRANSCRIPT(actual, ...)                              \
  do {                                                              \
    Lines expected_ = __VA_ARGS__;                                  \
    Lines actual_ = (actual);                                       \
    EXPECT_EQ(actual_, expected_) << "actual:\n"                    \
                                  << Join(actual_) << "expected:\n" \
                                  << Join(expected_);               \
  } while (0)

Message Msg(MessageType t, NodeId from, NodeId to, uint64_t term) {
  Message m;
  m.type = t;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

// Elects node 1 of {1,2,3} and settles the cluster.
Cluster ElectedCluster(ClusterOptions o = {}) {
  Cluster c({1, 2, 3}, o);
  c.Campaign(1);
  c.Stabilize();
  return c;
}

// ---- Election (paper 5.2; dissertation 9.6) ---------------------------------

TEST(RaftElection, PreVoteThenVoteThenNoop) {
  // Dissertation 9.6: a pre-candidate asks at term+1 without changing its term;
  // only with a quorum of pre-votes does it become a candidate (paper 5.2),
  // and a new leader appends a no-op of its term (paper 5.4.2, 8).
  Cluster c({1, 2, 3});
  c.Campaign(1);
  // Bootstrap: the configuration is entries 1..3 of term 1, committed.
  EXPECT_EQ(c[1].role(), Role::kPreCandidate);
  EXPECT_EQ(c[1].term(), 1u);
  EXPECT_TRANSCRIPT(c.Stabilize(), {
                                       "1->2 PreVote term=2 log=1/3",
                                       "1->3 PreVote term=2 log=1/3",
                                       "2->1 PreVoteResp term=2",
                                       "3->1 PreVoteResp term=2",
                                       "1->2 Vote term=2 log=1/3",
                                       "1->3 Vote term=2 log=1/3",
                                       "2->1 VoteResp term=2",
                                       "3->1 VoteResp term=2",
                                       "1->2 App term=2 prev=1/3 commit=3 entries=[2/4]",
                                       "1->3 App term=2 prev=1/3 commit=3 entries=[2/4]",
                                       "2->1 AppResp term=2 index=4",
                                       "3->1 AppResp term=2 index=4",
                                       "1->2 App term=2 prev=2/4 commit=4 entries=[]",
                                       "1->3 App term=2 prev=2/4 commit=4 entries=[]",
                                       "2->1 AppResp term=2 index=4",
                                       "3->1 AppResp term=2 index=4",
                                   });
  EXPECT_EQ(c[1].role(), Role::kLeader);
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(c[id].term(), 2u);
    EXPECT_EQ(c[id].commit(), 4u);
    EXPECT_EQ(c[id].leader(), 1u);
  }
}

TEST(RaftElection, WithoutPreVoteCandidateIncrementsTerm) {
  // Paper 5.2: a candidate increments its term, votes for itself, and asks.
  Cluster c({1, 2, 3}, ClusterOptions{.pre_vote = false});
  c.Campaign(1);
  EXPECT_EQ(c[1].role(), Role::kCandidate);
  EXPECT_EQ(c[1].term(), 2u);
  EXPECT_EQ(c[1].vote(), 1u);
  Lines t = c.Stabilize();
  ASSERT_GE(t.size(), 4u);
  EXPECT_EQ(t[0], "1->2 Vote term=2 log=1/3");
  EXPECT_EQ(t[1], "1->3 Vote term=2 log=1/3");
  EXPECT_EQ(t[2], "2->1 VoteResp term=2");
  EXPECT_EQ(c[1].role(), Role::kLeader);
}

TEST(RaftElection, ElectionTimeoutIsRandomisedAndStartsPreVote) {
  // Paper 5.2: election timeouts are random in [T, 2T).
  Cluster c({1, 2, 3});
  int timeout = c[2].randomized_election_timeout();
  EXPECT_GE(timeout, 10);
  EXPECT_LT(timeout, 20);
  c.Tick(2, timeout - 1);
  EXPECT_EQ(c[2].role(), Role::kFollower);
  c.Tick(2, 1);
  EXPECT_EQ(c[2].role(), Role::kPreCandidate);
}

TEST(RaftElection, SingleNodeElectsItselfAndCommits) {
  Cluster c({1});
  c.Campaign(1);
  c.Stabilize();
  EXPECT_EQ(c[1].role(), Role::kLeader);
  EXPECT_EQ(c[1].commit(), 2u);  // bootstrap entry 1, the no-op at 2
  ASSERT_TRUE(c[1].Propose("a").ok());
  c.Stabilize();
  EXPECT_EQ(c[1].commit(), 3u);
  ASSERT_EQ(c.applied(1).size(), 3u);
  EXPECT_EQ(c.applied(1)[2].data, "a");
}

TEST(RaftElection, OneVotePerTermFirstComeFirstServed) {
  // Paper 5.2 (election safety): each server votes for at most one candidate
  // in a term; a repeated request from the same candidate is granted again.
  Cluster c({1, 2, 3}, ClusterOptions{.pre_vote = false});
  Message v = Msg(MessageType::kVote, 1, 3, 5);
  v.log_term = 1;
  v.index = 3;
  c.Step(v);
  Message v2 = v;
  v2.from = 2;
  c.Step(v2);
  c.Step(v);
  EXPECT_TRANSCRIPT(c.Pending(), {
                                     "3->1 VoteResp term=5",
                                     "3->2 VoteResp term=5 reject",
                                     "3->1 VoteResp term=5",
                                 });
  EXPECT_EQ(c[3].vote(), 1u);
  EXPECT_EQ(c[3].term(), 5u);
}

TEST(RaftElection, VoteRequiresUpToDateLog) {
  // Paper 5.4.1: grant only if the candidate's log is at least as up to date:
  // a higher last term wins; with equal last terms, the longer log wins.
  struct Case {
    uint64_t last_term, last_index;
    bool granted;
  };
  // The voter's log: terms [1, 2, 2] (last 2/3).
  for (Case k :
       std::vector<Case>{{2, 3, true}, {2, 4, true}, {3, 1, true}, {2, 2, false}, {1, 9, false}}) {
    Cluster c(std::map<NodeId, InitialState>{{1, LogWithTerms({1, 2, 2}, 2, {1, 2, 3})}},
              ClusterOptions{.pre_vote = false});
    Message v = Msg(MessageType::kVote, 2, 1, 3);
    v.log_term = k.last_term;
    v.index = k.last_index;
    c.Step(v);
    ASSERT_EQ(c.queue().size(), 1u);
    EXPECT_EQ(!c.queue().front().reject, k.granted)
        << "candidate log " << k.last_term << "/" << k.last_index;
    EXPECT_EQ(c[1].term(), 3u);  // the higher term is adopted either way
  }
}

TEST(RaftElection, CandidateStepsDownOnAppendOfItsTerm) {
  // Paper 5.2: a candidate that hears from a leader of its term steps down.
  Cluster c({1, 2, 3}, ClusterOptions{.pre_vote = false});
  c.Campaign(2);
  c.ClearQueue();
  Message app = Msg(MessageType::kApp, 3, 2, c[2].term());
  app.log_term = 1;
  app.index = 3;
  c.Step(app);
  EXPECT_EQ(c[2].role(), Role::kFollower);
  EXPECT_EQ(c[2].leader(), 3u);
}

TEST(RaftElection, HigherTermStepsLeaderDown) {
  // Paper 5.1: any message with a higher term makes a leader a follower.
  Cluster c = ElectedCluster();
  c.Step(Msg(MessageType::kAppResp, 2, 1, 7));
  EXPECT_EQ(c[1].role(), Role::kFollower);
  EXPECT_EQ(c[1].term(), 7u);
}

// ---- PreVote and CheckQuorum (dissertation 9.6) ------------------------------

TEST(RaftPreVote, PartitionedNodeDoesNotInflateTermOrDisrupt) {
  // Dissertation 9.6: a node cut off from the cluster keeps failing its
  // pre-vote, so its term does not grow, and rejoining does not depose the
  // leader.
  Cluster c = ElectedCluster();
  c.Isolate(3);
  ASSERT_TRUE(c[1].Propose("while 3 is away").ok());
  for (int i = 0; i < 100; ++i) {
    c.Tick(3);
    c.Stabilize();
  }
  EXPECT_EQ(c[3].term(), 2u);
  EXPECT_NE(c[3].role(), Role::kLeader);
  // Back in the cluster: its pre-votes fail (its log is behind), the leader
  // keeps its term, and the node catches up.
  c.Heal();
  for (int i = 0; i < 30; ++i) {
    c.Tick(3);
    c.Stabilize();
  }
  c.Tick(1);
  c.Stabilize();
  EXPECT_EQ(c[1].role(), Role::kLeader);
  EXPECT_EQ(c[1].term(), 2u);
  EXPECT_EQ(c[3].term(), 2u);
  EXPECT_EQ(c[3].commit(), c[1].commit());
}

TEST(RaftPreVote, WithoutPreVoteRejoiningNodeDisruptsLeader) {
  // The problem PreVote solves (dissertation 9.6): without it the isolated
  // node's term grows, and on return it forces the leader to step down.
  Cluster c = ElectedCluster(ClusterOptions{.pre_vote = false});
  c.Isolate(3);
  for (int i = 0; i < 60; ++i) {
    c.Tick(3);
    c.Stabilize();
  }
  EXPECT_GT(c[3].term(), 3u);
  c.Heal();
  for (int i = 0; i < 20; ++i) {
    c.Tick(3);
    c.Stabilize();
  }
  EXPECT_GT(c[1].term(), 2u);  // deposed by the higher term
}

TEST(RaftPreVote, PreVoteRejectedByVoterWithLongerLog) {
  // A pre-vote applies the same up-to-date rule as a vote (paper 5.4.1).
  Cluster c(std::map<NodeId, InitialState>{{1, LogWithTerms({1, 1}, 1, {1, 2, 3})}},
            ClusterOptions{});
  Message pv = Msg(MessageType::kPreVote, 2, 1, 2);
  pv.log_term = 1;
  pv.index = 1;
  c.Step(pv);
  EXPECT_TRANSCRIPT(c.Pending(), {"1->2 PreVoteResp term=1 reject"});
  EXPECT_EQ(c[1].term(), 1u);  // a pre-vote never changes the voter's term
}

TEST(RaftCheckQuorum, IsolatedLeaderStepsDown) {
  // Dissertation 9.6: a leader that does not hear from a quorum within an
  // election timeout steps down.
  Cluster c = ElectedCluster(ClusterOptions{.check_quorum = true});
  c.Isolate(1);
  // Peers count as active for the round in which they last answered, so the
  // step-down comes within two election timeouts.
  for (int i = 0; i < 19; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_EQ(c[1].role(), Role::kLeader);
  c.Tick(1);
  EXPECT_EQ(c[1].role(), Role::kFollower);
  EXPECT_EQ(c[1].term(), 2u);
}

TEST(RaftCheckQuorum, ConnectedLeaderStays) {
  Cluster c = ElectedCluster(ClusterOptions{.check_quorum = true});
  for (int i = 0; i < 50; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_EQ(c[1].role(), Role::kLeader);
}

TEST(RaftCheckQuorum, VoteIgnoredWhileLeaderLeaseHolds) {
  // Dissertation 9.6 (4.2.3): a server that heard from the leader within the
  // minimum election timeout ignores a vote request: no reply, no new term.
  Cluster c = ElectedCluster(ClusterOptions{.pre_vote = false, .check_quorum = true});
  Message v = Msg(MessageType::kVote, 3, 2, 5);
  v.log_term = 2;
  v.index = 4;
  c.Step(v);
  EXPECT_TRANSCRIPT(c.Pending(), {});
  EXPECT_EQ(c[2].term(), 2u);
  // A transfer campaign (kCampaignTransfer) is answered despite the lease.
  v.context = kCampaignTransfer;
  c.Step(v);
  EXPECT_TRANSCRIPT(c.Pending(), {"2->3 VoteResp term=5"});
}

TEST(RaftCheckQuorum, StaleLeaderLearnsHigherTermFromAppResp) {
  // With PreVote/CheckQuorum a node may hold a higher term that nobody else
  // propagates; it answers a stale leader's append so that leader steps down.
  Cluster c = ElectedCluster(ClusterOptions{.check_quorum = true});
  Message v = Msg(MessageType::kVote, 3, 2, 4);  // forced: bypasses the lease
  v.context = kCampaignTransfer;
  v.log_term = 1;
  v.index = 1;
  c.Step(v);
  c.ClearQueue();
  EXPECT_EQ(c[2].term(), 4u);
  ASSERT_TRUE(c[1].Propose("x").ok());
  c.Stabilize();
  EXPECT_EQ(c[1].role(), Role::kFollower);
  EXPECT_EQ(c[1].term(), 4u);
}

// ---- Log replication (paper 5.3) --------------------------------------------

TEST(RaftLog, FollowerRejectsAppendWithoutMatchingPrev) {
  // Paper 5.3 (consistency check): a follower without an entry matching
  // prevLogIndex/prevLogTerm rejects, hinting its last index.
  Cluster c(std::map<NodeId, InitialState>{{2, LogWithTerms({1, 1}, 2, {1, 2, 3})}},
            ClusterOptions{});
  Message app = Msg(MessageType::kApp, 1, 2, 2);
  app.index = 5;
  app.log_term = 2;
  c.Step(app);
  app.index = 2;
  app.log_term = 2;  // index present, term differs
  c.Step(app);
  EXPECT_TRANSCRIPT(c.Pending(), {"2->1 AppResp term=2 index=5 reject hint=2",
                                  "2->1 AppResp term=2 index=2 reject hint=2"});
}

TEST(RaftLog, ConflictingSuffixIsReplacedByLeaders) {
  // Paper 5.3 (log matching): the leader forces followers to duplicate its
  // log; a conflicting follower suffix is deleted and replaced.
  std::map<NodeId, InitialState> s;
  s[1] = LogWithTerms({1, 1, 3}, 3, {1, 2, 3});
  s[2] = LogWithTerms({1, 1, 2, 2, 2}, 2, {1, 2, 3});
  s[3] = LogWithTerms({1}, 2, {1, 2, 3});
  Cluster c(std::move(s), ClusterOptions{.pre_vote = false});
  c.Campaign(1);
  Lines t = c.Stabilize();
  EXPECT_EQ(c[1].role(), Role::kLeader);
  EXPECT_EQ(c[1].term(), 4u);
  for (NodeId id : {1, 2, 3}) {
    ASSERT_EQ(c[id].last_index(), 4u) << "node " << id;
    for (uint64_t i = 1; i <= 4; ++i)
      EXPECT_EQ(c[id].TermAt(i), c[1].TermAt(i)) << "node " << id << " index " << i;
    EXPECT_EQ(c[id].commit(), 4u);
  }
  // Node 2 first rejected the leader's guess and was probed back.
  bool saw_reject = false;
  for (const std::string& l : t)
    saw_reject |= l.rfind("2->1 AppResp term=4 index=3 reject", 0) == 0;
  EXPECT_TRUE(saw_reject) << Join(t);
}

TEST(RaftLog, StaleReorderedAppendDoesNotTruncate) {
  // Paper 5.3: "if an existing entry conflicts ... delete it"; an entry that
  // matches is kept, so an old append arriving late cannot shorten the log.
  Cluster c(std::map<NodeId, InitialState>{{2, LogWithTerms({1, 1, 1}, 1, {1, 2})}},
            ClusterOptions{});
  Message app = Msg(MessageType::kApp, 1, 2, 1);
  app.index = 0;
  app.log_term = 0;
  Entry e;
  e.term = 1;
  e.index = 1;
  e.data = "x1";
  app.entries = {e};
  c.Step(app);
  EXPECT_EQ(c[2].last_index(), 3u);
}

TEST(RaftLog, FlowControlBoundsInflightAppends) {
  // Probe: one append at a time until a match is found; replicate: at most
  // max_inflight unacknowledged appends.
  Cluster c = ElectedCluster(ClusterOptions{.max_inflight = 2, .max_entries_per_msg = 1});
  c.Isolate(3);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(c[1].Propose("p" + std::to_string(i)).ok());
  const Progress& p3 = c[1].progress().at(3);
  EXPECT_EQ(p3.state, ProgressState::kReplicate);
  EXPECT_EQ(p3.inflights.Count(), 2u);
  EXPECT_TRUE(p3.IsPaused());
  c.ProcessAll();
  int to3 = 0;
  for (const Message& m : c.queue()) to3 += (m.to == 3 && m.type == MessageType::kApp) ? 1 : 0;
  EXPECT_EQ(to3, 2);
  c.Stabilize();
  EXPECT_EQ(c[1].commit(), 10u);  // nodes 1 and 2 are a quorum
  c.Heal();
  // Heartbeat responses free the window; lost appends are rejected and probed.
  for (int i = 0; i < 20; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_EQ(c[3].last_index(), 10u);
  EXPECT_EQ(c[3].commit(), 10u);
  EXPECT_EQ(c[1].progress().at(3).state, ProgressState::kReplicate);
}

TEST(RaftLog, ProposalLimitsAreEnforced) {
  Cluster c = ElectedCluster();
  EXPECT_EQ(c[2].Propose("x").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(c[1].Propose(std::string(limits::kMaxEntryBytes + 1, 'x')).status().code(),
            StatusCode::kInvalidArgument);
}

// ---- Commit rule (paper 5.4.2, Figure 8) -------------------------------------

TEST(RaftCommit, OldTermEntryNotCommittedByCountingReplicas) {
  // Paper 5.4.2 / Figure 8: S1 (log terms 1,2) leads term 4 after a term-3
  // leader (S5) wrote a different entry at index 2. Even once index 2 is on a
  // majority (S1, S2, S3) it must not commit by counting replicas: S5 could
  // still be elected and overwrite it. It commits only with an entry of term 4.
  std::map<NodeId, InitialState> s;
  s[1] = LogWithTerms({1, 2}, 3, {1, 2, 3, 4, 5});
  s[2] = LogWithTerms({1, 2}, 3, {1, 2, 3, 4, 5});
  s[3] = LogWithTerms({1}, 3, {1, 2, 3, 4, 5});
  s[4] = LogWithTerms({1}, 3, {1, 2, 3, 4, 5});
  s[5] = LogWithTerms({1, 3}, 3, {1, 2, 3, 4, 5});
  for (auto& [id, st] : s) st.hard_state.commit = 1;
  Cluster c(std::move(s), ClusterOptions{.pre_vote = false});
  c.Campaign(1);
  for (NodeId v : {2, 3, 4}) {
    Message r = Msg(MessageType::kVoteResp, v, 1, 4);
    c.Step(r);
  }
  ASSERT_EQ(c[1].role(), Role::kLeader);
  ASSERT_EQ(c[1].last_index(), 3u);  // the no-op of term 4 at index 3
  c.ClearQueue();
  // S2 and S3 acknowledge index 2 only (S3's copy of index 3 was lost).
  Message a2 = Msg(MessageType::kAppResp, 2, 1, 4);
  a2.index = 2;
  c.Step(a2);
  Message a3 = Msg(MessageType::kAppResp, 3, 1, 4);
  a3.index = 2;
  c.Step(a3);
  EXPECT_EQ(c[1].commit(), 1u) << "an entry of term 2 committed by counting replicas in term 4";
  // Once the term-4 entry is on a majority, it and everything before commit.
  a2.index = 3;
  c.Step(a2);
  a3.index = 3;
  c.Step(a3);
  EXPECT_EQ(c[1].commit(), 3u);
}

TEST(RaftCommit, Figure8OverwriteOfUncommittedEntryIsSafe) {
  // The other half of Figure 8: S5 (last term 3) can win with votes from S2,
  // S3, S4 and replace index 2 everywhere, because it was never committed.
  std::map<NodeId, InitialState> s;
  s[1] = LogWithTerms({1, 2}, 3, {1, 2, 3, 4, 5});
  s[2] = LogWithTerms({1, 2}, 3, {1, 2, 3, 4, 5});
  s[3] = LogWithTerms({1, 2}, 3, {1, 2, 3, 4, 5});
  s[4] = LogWithTerms({1}, 3, {1, 2, 3, 4, 5});
  s[5] = LogWithTerms({1, 3}, 3, {1, 2, 3, 4, 5});
  for (auto& [id, st] : s) st.hard_state.commit = 1;
  Cluster c(std::move(s), ClusterOptions{.pre_vote = false});
  c.Isolate(1);
  c.Campaign(5);
  c.Stabilize();
  EXPECT_EQ(c[5].role(), Role::kLeader);
  for (NodeId id : {2, 3, 4, 5}) {
    EXPECT_EQ(c[id].TermAt(2), 3u) << "node " << id;
    EXPECT_EQ(c[id].commit(), 3u);
  }
}

// ---- Snapshots (paper 7) -----------------------------------------------------

TEST(RaftSnapshot, LaggingFollowerGetsSnapshotThenEntries) {
  // Paper 7: a leader that compacted away the entries a follower needs sends
  // InstallSnapshot; the follower discards its log and adopts the snapshot.
  Cluster c = ElectedCluster();
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c[1].Propose("p" + std::to_string(i)).ok());
  c.Stabilize();
  ASSERT_EQ(c[1].applied(), 9u);
  Result<Snapshot> snap = c[1].CreateSnapshot(8, "state@8");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(snap->meta.index, 8u);
  EXPECT_EQ(snap->meta.term, 2u);
  EXPECT_EQ(snap->meta.conf.voters, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_EQ(c[1].first_index(), 9u);
  c.Heal();
  Lines t;
  for (int i = 0; i < 5; ++i) {
    c.Tick(1);
    Lines more = c.Stabilize();
    t.insert(t.end(), more.begin(), more.end());
  }
  bool saw_snap = false;
  for (const std::string& l : t) saw_snap |= l == "1->3 Snap term=2 snap=2/8";
  EXPECT_TRUE(saw_snap) << Join(t);
  ASSERT_EQ(c.snapshots_applied(3).size(), 1u);
  EXPECT_EQ(c.snapshots_applied(3)[0].data, "state@8");
  EXPECT_EQ(c[3].snapshot_meta().index, 8u);
  EXPECT_EQ(c[3].last_index(), 9u);
  EXPECT_EQ(c[3].commit(), 9u);
  EXPECT_EQ(c[1].progress().at(3).state, ProgressState::kReplicate);
}

TEST(RaftSnapshot, SnapshotNotAboveAppliedIsRefused) {
  Cluster c = ElectedCluster();
  EXPECT_EQ(c[1].CreateSnapshot(9, "x").status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c[1].CreateSnapshot(1, "x").ok());
  EXPECT_EQ(c[1].CreateSnapshot(1, "x").status().code(), StatusCode::kFailedPrecondition);
}

TEST(RaftSnapshot, LostSnapshotIsRetried) {
  Cluster c = ElectedCluster();
  c.Isolate(3);
  ASSERT_TRUE(c[1].Propose("a").ok());
  c.Stabilize();
  ASSERT_TRUE(c[1].CreateSnapshot(5, "s").ok());
  c.DropIf([](const Message& m) { return m.type == MessageType::kSnap; });
  c.Heal();
  c.DropIf([](const Message& m) { return m.type == MessageType::kSnap; });
  for (int i = 0; i < 3; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_EQ(c[1].progress().at(3).state, ProgressState::kSnapshot);
  c.Heal();
  for (int i = 0; i < 30; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_EQ(c[3].commit(), 5u);
  EXPECT_EQ(c[1].progress().at(3).state, ProgressState::kReplicate);
}

// ---- Membership (dissertation 4.1, 4.2.2) ------------------------------------

TEST(RaftMembership, AddServerCatchesUpAndVotes) {
  // Dissertation 4.1: one server at a time; the new configuration is used as
  // soon as its entry is in a server's log.
  Cluster c = ElectedCluster();
  InitialState empty;  // a new server: no log, no configuration
  c.AddNode(4, empty);
  Result<uint64_t> idx = c[1].ProposeConfChange({ConfChange::Type::kAddNode, 4});
  ASSERT_TRUE(idx.ok()) << idx.status().ToString();
  EXPECT_TRUE(c[1].conf().Contains(4));  // in effect on append, before commit
  // A second change waits until the first commits.
  EXPECT_EQ(c[1].ProposeConfChange({ConfChange::Type::kAddNode, 5}).status().code(),
            StatusCode::kFailedPrecondition);
  c.Stabilize();
  for (int i = 0; i < 3; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  for (NodeId id : {1, 2, 3, 4}) {
    EXPECT_EQ(c[id].conf().voters, (std::vector<NodeId>{1, 2, 3, 4})) << "node " << id;
    EXPECT_EQ(c[id].commit(), 5u) << "node " << id;
  }
  // Four voters: a quorum is three.
  c.Isolate(3);
  c.Isolate(4);
  ASSERT_TRUE(c[1].Propose("x").ok());
  c.Stabilize();
  EXPECT_EQ(c[1].commit(), 5u);
  c.Heal();
  c.Tick(1);
  c.Stabilize();
  EXPECT_EQ(c[1].commit(), 6u);
}

TEST(RaftMembership, LeaderCommitsOwnTermEntryBeforeChanging) {
  // The fix to single-server changes (Ongaro, raft-dev 2015): a new leader
  // must commit an entry of its term before it proposes a change.
  Cluster c({1, 2, 3});
  c.Campaign(1);
  Lines t = c.Stabilize(8);  // elected, the no-op not yet committed
  ASSERT_EQ(c[1].role(), Role::kLeader);
  ASSERT_LT(c[1].commit(), c[1].last_index());
  EXPECT_EQ(c[1].ProposeConfChange({ConfChange::Type::kRemoveNode, 3}).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST(RaftMembership, RemovedLeaderStepsDownAfterCommit) {
  // Dissertation 4.2.2: a leader removed from the configuration keeps leading
  // (without counting itself) until the change commits, then steps down.
  Cluster c = ElectedCluster();
  ASSERT_TRUE(c[1].ProposeConfChange({ConfChange::Type::kRemoveNode, 1}).ok());
  EXPECT_EQ(c[1].role(), Role::kLeader);
  c.Stabilize();
  EXPECT_EQ(c[1].role(), Role::kFollower);
  EXPECT_EQ(c[2].conf().voters, (std::vector<NodeId>{2, 3}));
  // The rest elect a leader among themselves; node 1 no longer campaigns.
  for (int i = 0; i < 40; ++i) {
    c.Tick(1);
    c.Tick(2);
    c.Tick(3);
    c.Stabilize();
  }
  EXPECT_NE(c[1].role(), Role::kLeader);
  EXPECT_EQ(c[1].role(), Role::kFollower);
  EXPECT_TRUE(c[2].role() == Role::kLeader || c[3].role() == Role::kLeader);
}

TEST(RaftMembership, UncommittedChangeRollsBackWithTruncation) {
  // Dissertation 4.1: the latest configuration in the log is used even when
  // uncommitted, so a truncated change entry must revert the configuration.
  Cluster c(std::map<NodeId, InitialState>{{2, LogWithTerms({1}, 1, {1, 2, 3})}}, ClusterOptions{});
  Message app = Msg(MessageType::kApp, 1, 2, 1);
  app.index = 1;
  app.log_term = 1;
  Entry cc;
  cc.term = 1;
  cc.index = 2;
  cc.type = EntryType::kConfChange;
  cc.data = ConfChange{ConfChange::Type::kRemoveNode, 3}.Encode();
  app.entries = {cc};
  c.Step(app);
  EXPECT_EQ(c[2].conf().voters, (std::vector<NodeId>{1, 2}));
  Message app2 = Msg(MessageType::kApp, 3, 2, 2);
  app2.index = 1;
  app2.log_term = 1;
  Entry e;
  e.term = 2;
  e.index = 2;
  app2.entries = {e};
  c.Step(app2);
  EXPECT_EQ(c[2].TermAt(2), 2u);
  EXPECT_EQ(c[2].conf().voters, (std::vector<NodeId>{1, 2, 3}));
}

// ---- Leadership transfer (dissertation 3.10) ---------------------------------

TEST(RaftTransfer, TimeoutNowElectsTransferee) {
  Cluster c = ElectedCluster(ClusterOptions{.check_quorum = true});
  ASSERT_TRUE(c[1].TransferLeadership(2).ok());
  EXPECT_EQ(c[1].Propose("x").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRANSCRIPT(c.Stabilize(), {
                                       "1->2 TimeoutNow term=2",
                                       "2->1 Vote term=3 log=2/4 transfer",
                                       "2->3 Vote term=3 log=2/4 transfer",
                                       "1->2 VoteResp term=3",
                                       "3->2 VoteResp term=3",
                                       "2->1 App term=3 prev=2/4 commit=4 entries=[3/5]",
                                       "2->3 App term=3 prev=2/4 commit=4 entries=[3/5]",
                                       "1->2 AppResp term=3 index=5",
                                       "3->2 AppResp term=3 index=5",
                                       "2->1 App term=3 prev=3/5 commit=5 entries=[]",
                                       "2->3 App term=3 prev=3/5 commit=5 entries=[]",
                                       "1->2 AppResp term=3 index=5",
                                       "3->2 AppResp term=3 index=5",
                                   });
  EXPECT_EQ(c[2].role(), Role::kLeader);
  EXPECT_EQ(c[1].role(), Role::kFollower);
}

TEST(RaftTransfer, LaggingTransfereeIsCaughtUpFirst) {
  Cluster c = ElectedCluster();
  c.Isolate(3);
  ASSERT_TRUE(c[1].Propose("x").ok());
  c.Stabilize();
  c.Heal();
  ASSERT_TRUE(c[1].TransferLeadership(3).ok());
  Lines t = c.Stabilize();
  // The leader first sends the missing entry 5, then TimeoutNow.
  size_t sent = t.size(), timeout_now = t.size();
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == "1->3 App term=2 prev=2/4 commit=5 entries=[2/5]") sent = std::min(sent, i);
    if (t[i] == "1->3 TimeoutNow term=2") timeout_now = std::min(timeout_now, i);
  }
  EXPECT_LT(sent, timeout_now) << Join(t);
  EXPECT_LT(timeout_now, t.size()) << Join(t);
  EXPECT_EQ(c[3].role(), Role::kLeader);
}

TEST(RaftTransfer, AbortedAfterElectionTimeout) {
  Cluster c = ElectedCluster();
  c.Isolate(3);
  ASSERT_TRUE(c[1].TransferLeadership(3).ok());
  c.Tick(1, 10);
  c.Stabilize();
  EXPECT_EQ(c[1].lead_transferee(), kNoNode);
  EXPECT_TRUE(c[1].Propose("x").ok());
}

// ---- ReadIndex (dissertation 6.4) --------------------------------------------

TEST(RaftReadIndex, LeaderConfirmsLeadershipBeforeServing) {
  Cluster c = ElectedCluster();
  ASSERT_TRUE(c[1].ReadIndex(7).ok());
  EXPECT_TRUE(c.reads(1).empty());  // not before a quorum answers
  EXPECT_TRANSCRIPT(c.Stabilize(), {
                                       "1->2 Heartbeat term=2 commit=4 ctx=1",
                                       "1->3 Heartbeat term=2 commit=4 ctx=1",
                                       "2->1 HeartbeatResp term=2 ctx=1",
                                       "3->1 HeartbeatResp term=2 ctx=1",
                                   });
  ASSERT_EQ(c.reads(1).size(), 1u);
  EXPECT_EQ(c.reads(1)[0], (ReadState{4, 7}));
}

TEST(RaftReadIndex, FollowerForwardsToLeader) {
  Cluster c = ElectedCluster();
  ASSERT_TRUE(c[1].Propose("x").ok());
  c.Stabilize();
  ASSERT_TRUE(c[3].ReadIndex(9).ok());
  c.Stabilize();
  ASSERT_EQ(c.reads(3).size(), 1u);
  EXPECT_EQ(c.reads(3)[0], (ReadState{5, 9}));
}

TEST(RaftReadIndex, RefusedBeforeLeaderCommitsItsTerm) {
  // Dissertation 6.4 step 1: the commit index is only known to be current
  // once the leader has committed an entry of its own term.
  Cluster c({1, 2, 3});
  c.Campaign(1);
  c.Stabilize(8);
  ASSERT_EQ(c[1].role(), Role::kLeader);
  EXPECT_EQ(c[1].ReadIndex(1).code(), StatusCode::kUnavailable);
  EXPECT_EQ(Cluster({1, 2, 3})[2].ReadIndex(1).code(),
            StatusCode::kUnavailable);  // no leader known
}

TEST(RaftReadIndex, DeposedLeaderCannotServe) {
  // A leader cut off from the quorum gets no heartbeat answers: the read is
  // never released, so it cannot return stale data.
  Cluster c = ElectedCluster();
  c.Isolate(1);
  ASSERT_TRUE(c[1].ReadIndex(5).ok());
  for (int i = 0; i < 5; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_TRUE(c.reads(1).empty());
}

// ---- Ready/Advance contract ---------------------------------------------------

TEST(RaftReady, HardStateAndEntriesBeforeMessages) {
  // Paper Figure 2: currentTerm, votedFor and log are persisted before
  // answering; a vote's Ready carries the new hard state with its response.
  Cluster c({1, 2, 3}, ClusterOptions{.pre_vote = false});
  c.ProcessAll();
  Message v = Msg(MessageType::kVote, 1, 2, 2);
  v.log_term = 1;
  v.index = 3;
  c[2].Step(v);
  Ready rd = c[2].GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(*rd.hard_state, (HardState{2, 1, 3}));
  EXPECT_TRUE(rd.MustSync());
  ASSERT_EQ(rd.messages.size(), 1u);
  c[2].Advance(rd);
  EXPECT_FALSE(c[2].HasReady());
}

TEST(RaftReady, OnlyALeadersAppendsMayLeaveBeforeItsWrite) {
  // Dissertation 10.2.1: the leader may replicate an entry while it writes
  // it, since its own copy counts toward a commit only once persisted; every
  // other message promises something about the sender's disk.
  Cluster c({1, 2, 3}, ClusterOptions{.pre_vote = false});
  c.ProcessAll();
  c[1].Campaign();
  Ready cand = c[1].GetReady();
  EXPECT_TRUE(cand.term_or_vote_changed);
  ASSERT_EQ(cand.messages.size(), 2u);
  for (const Message& m : cand.messages) {
    EXPECT_EQ(m.type, MessageType::kVote);
    EXPECT_FALSE(cand.SendableBeforePersist(m)) << testing::Describe(m);
  }
  c[1].Advance(cand);
  c[2].Step(cand.messages[0]);
  Ready voter = c[2].GetReady();
  ASSERT_EQ(voter.messages.size(), 1u);
  EXPECT_FALSE(voter.SendableBeforePersist(voter.messages[0]));  // a vote
  c[2].Advance(voter);
  c[1].Step(voter.messages[0]);
  ASSERT_EQ(c[1].role(), Role::kLeader);

  // The new leader's no-op: its term is already durable, so the appends may go first.
  Ready lead = c[1].GetReady();
  EXPECT_FALSE(lead.term_or_vote_changed);
  ASSERT_EQ(lead.entries.size(), 1u);
  ASSERT_EQ(lead.messages.size(), 2u);
  for (const Message& m : lead.messages) {
    EXPECT_EQ(m.type, MessageType::kApp);
    EXPECT_TRUE(lead.SendableBeforePersist(m)) << testing::Describe(m);
  }
  // The follower's acknowledgement waits for its write.
  c[2].Step(lead.messages[0].to == 2 ? lead.messages[0] : lead.messages[1]);
  Ready ack = c[2].GetReady();
  ASSERT_EQ(ack.messages.size(), 1u);
  EXPECT_EQ(ack.messages[0].type, MessageType::kAppResp);
  EXPECT_FALSE(ack.SendableBeforePersist(ack.messages[0]));
  c[2].Advance(ack);
  c[1].Advance(lead);
  c[1].Step(ack.messages[0]);
  EXPECT_EQ(c[1].commit(), 4u);  // leader (persisted at Advance) + node 2

  // A leader whose Ready changes its term (a one-node cluster elects itself
  // in one step) sends nothing before the write.
  Cluster one({1});
  one[1].Campaign();
  Ready self = one[1].GetReady();
  EXPECT_EQ(self.soft_state.role, Role::kLeader);
  EXPECT_TRUE(self.term_or_vote_changed);
  Message app = Msg(MessageType::kApp, 1, 2, one[1].term());
  EXPECT_FALSE(self.SendableBeforePersist(app));
  one[1].Advance(self);
}

TEST(RaftReady, CommitOnlyChangeNeedsNoSync) {
  InitialState st = LogWithTerms({1, 1}, 1, {1, 2});
  st.hard_state.commit = 1;
  Cluster c(std::map<NodeId, InitialState>{{2, st}}, ClusterOptions{});
  c.ProcessAll();
  Message hb = Msg(MessageType::kHeartbeat, 1, 2, 1);
  hb.commit = 2;
  c[2].Step(hb);
  Ready rd = c[2].GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(*rd.hard_state, (HardState{1, 0, 2}));
  EXPECT_FALSE(rd.MustSync());
  EXPECT_EQ(rd.committed_entries.size(), 1u);
  c[2].Advance(rd);
}

TEST(RaftReady, RestartKeepsTermVoteAndLog) {
  InitialState st = LogWithTerms({1, 1, 2}, 2, {1, 2, 3});
  st.hard_state.vote = 3;
  st.hard_state.commit = 2;
  Config cfg;
  cfg.id = 1;
  Raft r(cfg, st);
  EXPECT_EQ(r.term(), 2u);
  EXPECT_EQ(r.vote(), 3u);
  EXPECT_EQ(r.commit(), 2u);
  EXPECT_EQ(r.applied(), 0u);
  Ready rd = r.GetReady();
  EXPECT_EQ(rd.committed_entries.size(), 2u);  // re-applied after restart
  EXPECT_TRUE(rd.entries.empty());             // already on disk
  r.Advance(rd);
}

}  // namespace
}  // namespace cohort::coordinator::raft
