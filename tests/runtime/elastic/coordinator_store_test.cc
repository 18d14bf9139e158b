// CoordinatorStore (the collectives' Store over the coordinator) against 3
// in-process Nodes: Get times out with DEADLINE_EXCEEDED, Wait wakes when
// another thread sets, Add is atomic, and a Gloo communicator of 3 ranks (as
// threads) bootstraps through it and all-reduces. Also the embedded
// single-node coordinator.
#include "runtime/elastic/coordinator_store.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>
#include <vector>

#include "collectives/gloo/gloo_communicator.h"
#include "coordinator/server/embedded.h"
#include "tests/coordinator/cluster/cluster_fixture.h"

namespace cohort::coordinator {
namespace {

using elastic::CoordinatorStore;

class StoreTest : public ClusterTest {
 protected:
  std::shared_ptr<CoordinatorStore> MakeStore(const std::string& prefix) {
    ClientOptions o;
    for (auto& [id, a] : peers_) o.endpoints.push_back(a);
    o.token = "tok";
    o.deadline = 10s;
    Result<std::shared_ptr<CoordinatorStore>> s = CoordinatorStore::Create(o, prefix);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : nullptr;
  }
};

TEST_F(StoreTest, StoreSemantics) {
  for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
  std::shared_ptr<CoordinatorStore> store = MakeStore("job/epoch-1");
  ASSERT_NE(store, nullptr);
  // Get of a key nobody sets: DEADLINE_EXCEEDED at the timeout.
  Result<std::string> g = store->Get("never", 300ms);
  EXPECT_EQ(g.status().code(), StatusCode::kDeadlineExceeded) << g.status().ToString();
  EXPECT_EQ(ValueOr(store->Check("never"), true), false);

  // Wait wakes when another thread sets the keys.
  auto waiting = std::async(std::launch::async, [&] { return store->Wait({"a", "b"}, 20s); });
  ASSERT_TRUE(store->Set("a", "1").ok());
  ASSERT_TRUE(store->Set("b", std::string("\0two", 4)).ok());
  Status w = waiting.get();
  EXPECT_TRUE(w.ok()) << w.ToString();
  EXPECT_EQ(ValueOr<std::string>(store->Get("b", 1s), ""), std::string("\0two", 4));
  EXPECT_TRUE(ValueOr(store->Check("a"), false));

  // Keys live under the prefix: another prefix does not see them.
  std::shared_ptr<CoordinatorStore> other = MakeStore("job/epoch-2");
  EXPECT_EQ(ValueOr(other->Check("a"), true), false);

  // Add is atomic across threads.
  std::vector<std::thread> adders;
  for (int t = 0; t < 3; ++t) {
    adders.emplace_back([&] {
      for (int i = 0; i < 10; ++i) ASSERT_TRUE(store->Add("counter", 2).ok());
    });
  }
  for (auto& t : adders) t.join();
  EXPECT_EQ(ValueOr<int64_t>(store->Add("counter", 0), -1), 60);
  EXPECT_EQ(store->Add("b", 1).status().code(), StatusCode::kInvalidArgument);  // not a counter
}

TEST_F(StoreTest, GlooAllReduceBootstrapsThroughTheCoordinator) {
  for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
  constexpr int kRanks = 3;
  std::shared_ptr<CoordinatorStore> store = MakeStore("job/epoch-1/gloo");
  ASSERT_NE(store, nullptr);
  std::vector<Status> results(kRanks);
  std::vector<std::vector<float>> out(kRanks);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back([&, r] {
      GlooOptions go;
      go.prefix = "comm";
      go.timeout = 30s;
      Result<std::unique_ptr<GlooCommunicator>> comm =
          GlooCommunicator::Create(store, r, kRanks, go);
      if (!comm.ok()) {
        results[r] = comm.status();
        return;
      }
      std::vector<float> data(1000);
      for (size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<float>(r + 1) * static_cast<float>(i);
      out[r].resize(data.size());
      results[r] =
          (*comm)->AllReduce(data.data(), out[r].data(), data.size(), DType::kF32, ReduceOp::kSum);
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].ToString();
    for (size_t i = 0; i < out[r].size(); ++i) {
      ASSERT_EQ(out[r][i], 6.0f * static_cast<float>(i)) << "rank " << r << " element " << i;
    }
  }
}

TEST(Embedded, SingleNodeServesAndKeepsItsStateAcrossRestart) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("cohort-embedded-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  EmbeddedOptions eo;
  eo.data_dir = dir.string();
  eo.token = "secret";
  auto make_client = [](const std::string& addr) {
    ClientOptions o;
    o.endpoints = {addr};
    o.token = "secret";
    return std::move(Client::Create(o)).value();
  };
  {
    Result<std::unique_ptr<EmbeddedCoordinator>> e = EmbeddedCoordinator::Start(eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    std::string addr = (*e)->address();
    EXPECT_EQ(addr.rfind("127.0.0.1:", 0), 0u) << addr;
    EXPECT_NE(addr, "127.0.0.1:0");
    auto c = make_client(addr);
    ASSERT_TRUE(c->Put("k", "v").ok());
    ASSERT_TRUE(c->Join("w0", "127.0.0.1:1", 0).ok());
    ASSERT_EQ(ValueOr<uint64_t>(c->CommitEpoch(0, {"w0"}), 0), 1u);
    Result<NodeStatus> st = c->StatusOf(addr);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->role, "leader");
    ASSERT_EQ(st->nodes.size(), 1u);
    EXPECT_EQ(st->nodes[0].second, addr);  // the chosen port, not :0
    (*e)->Stop();
    (*e)->Stop();  // idempotent
  }
  // Restarted on the same directory (another port): the state is back.
  Result<std::unique_ptr<EmbeddedCoordinator>> e = EmbeddedCoordinator::Start(eo);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto c = make_client((*e)->address());
  EXPECT_EQ(c->Get("k")->value_or(""), "v");
  EXPECT_EQ(c->GetJob()->epoch, 1u);
  // A wrong token is refused.
  ClientOptions bad;
  bad.endpoints = {(*e)->address()};
  bad.token = "wrong";
  EXPECT_EQ(std::move(Client::Create(bad)).value()->Get("k").status().code(),
            StatusCode::kPermissionDenied);
  e->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cohort::coordinator
