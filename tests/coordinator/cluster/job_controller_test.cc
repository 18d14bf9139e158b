// The job controller (coordinator/controller) inside 3 in-process Nodes,
// against fake workers: gRPC health servers whose answer the test flips
// between SERVING and NOT_SERVING. It commits the first epoch once `max`
// members answer, evicts a member whose probes fail and commits an epoch
// without it, takes it back once it answers and joins again, re-forms on a
// worker's request, and keeps doing so after the leader is killed.
#include "coordinator/controller/job_controller.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "proto/health.grpc.pb.h"
#include "tests/coordinator/cluster/cluster_fixture.h"

namespace cohort::coordinator {
namespace {

// Waits (polling) for `pred`; false after `limit` (a bound against hanging,
// not a timing assertion).
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit = 20s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

class FakeWorker final : public grpc::health::v1::Health::Service {
 public:
  FakeWorker() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
  }
  ~FakeWorker() override { server_->Shutdown(std::chrono::system_clock::now() + 100ms); }
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* r) override {
    r->set_status(serving_ ? grpc::health::v1::HealthCheckResponse::SERVING
                           : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    return grpc::Status::OK;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::atomic<bool> serving_{true};

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

JobConfig FastConfig() {
  JobConfig c;
  c.job = "j";
  c.min = 1;
  c.max = 2;
  c.join_grace = 60s;  // the first epoch must wait for both
  c.probe_interval = 20ms;
  c.probe_deadline = 500ms;
  c.failure_threshold = 2;
  c.cooldown = 100ms;
  return c;
}

std::vector<std::string> Ranks(Client& c) {
  auto j = c.GetJob();
  return j.ok() ? j->ranks : std::vector<std::string>{};
}
uint64_t Epoch(Client& c) { return ValueOr(c.GetJob(), JobInfo{}).epoch; }

class ControllerTest : public ClusterTest {
 protected:
  void StartJob(Client& c) {
    for (raft::NodeId id = 1; id <= 3; ++id) StartNode(id);
    ASSERT_TRUE(c.Put(kJobConfigKey, FastConfig().ToJson()).ok());
    ASSERT_TRUE(c.Join("w0", w0_.address(), 0).ok());
    // One member alone is not `max`: no epoch within the join grace.
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(Epoch(c), 0u);
    ASSERT_TRUE(c.Join("w1", w1_.address(), 0).ok());
    ASSERT_TRUE(WaitFor([&] { return Epoch(c) == 1; })) << "no first epoch";
    EXPECT_EQ(Ranks(c), (std::vector<std::string>{"w0", "w1"}));
  }
  FakeWorker w0_, w1_;
};

TEST_F(ControllerTest, EvictsAFailingMemberAndTakesItBack) {
  auto c = MakeClient();
  StartJob(*c);
  w1_.serving_ = false;
  ASSERT_TRUE(WaitFor([&] { return Epoch(*c) == 2; })) << "w1 not evicted";
  EXPECT_EQ(Ranks(*c), (std::vector<std::string>{"w0"}));
  auto job = c->GetJob();
  ASSERT_TRUE(job.ok());
  for (const auto& m : job->members) {
    if (m.id == "w1") {
      EXPECT_EQ(m.state, MemberState::kFailed);
    }
  }
  auto h = c->Get(HealthKey("j", "w1"));
  ASSERT_TRUE(h.ok() && h->has_value());
  auto hj = nlohmann::json::parse(**h);
  EXPECT_NE(hj["breaker"].get<std::string>(), "closed");
  EXPECT_NE(hj["reason"].get<std::string>().find("failed probe"), std::string::npos) << **h;
  // Heartbeats are refused to an evicted member; it joins again (as a worker's
  // heartbeat thread does) and, once its probes pass, is in a later epoch.
  EXPECT_FALSE(c->Heartbeat("w1", 2).ok());
  w1_.serving_ = true;
  ASSERT_TRUE(c->Join("w1", w1_.address(), 2).ok());
  ASSERT_TRUE(WaitFor([&] { return Epoch(*c) == 3; })) << "w1 not taken back";
  EXPECT_EQ(Ranks(*c), (std::vector<std::string>{"w0", "w1"}));  // the survivor keeps rank 0
}

TEST_F(ControllerTest, ReformsOnRequestAndMovesWithTheLeader) {
  auto c = MakeClient();
  StartJob(*c);
  ASSERT_TRUE(c->Put(ReformKey("j", 1), "w0").ok());
  ASSERT_TRUE(WaitFor([&] { return Epoch(*c) == 2; })) << "no re-formation";
  EXPECT_EQ(Ranks(*c), (std::vector<std::string>{"w0", "w1"}));
  const raft::NodeId leader = Leader(*c);
  ASSERT_NE(leader, 0u);
  nodes_[leader].reset();  // the controller that decided so far is gone
  w0_.serving_ = false;
  ASSERT_TRUE(WaitFor([&] { return Epoch(*c) == 3; }))
      << "the new leader's controller did not evict w0";
  EXPECT_EQ(Ranks(*c), (std::vector<std::string>{"w1"}));
}

}  // namespace
}  // namespace cohort::coordinator
