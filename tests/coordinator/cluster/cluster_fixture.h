#pragma once
// A 3-node in-process coordinator cluster on 127.0.0.1 for the cluster tests:
// real Nodes (gRPC, WAL in a temporary directory) driven through the client
// library.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "coordinator/client/client.h"
#include "coordinator/server/node.h"

namespace cohort::coordinator {

using namespace std::chrono_literals;

// The value, or `fallback` on an error (test assertions on one line).
template <typename T>
T ValueOr(const Result<T>& r, T fallback) {
  return r.ok() ? *r : fallback;
}

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cohort-node-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    for (raft::NodeId id = 1; id <= 3; ++id) peers_[id] = "127.0.0.1:" + std::to_string(FreePort());
  }
  void TearDown() override {
    for (auto& n : nodes_) n.reset();
    std::filesystem::remove_all(dir_);
  }
  void StartNode(raft::NodeId id) {
    NodeOptions o;
    o.id = id;
    o.peers = peers_;
    o.data_dir = (dir_ / ("n" + std::to_string(id))).string();
    o.token = "tok";
    o.snapshot_every = 8;  // compaction and InstallSnapshot get exercised
    Result<std::unique_ptr<Node>> n = Node::Start(o);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    nodes_[id] = std::move(n).value();
  }
  std::unique_ptr<Client> MakeClient(const std::string& token = "tok", uint64_t client_id = 0) {
    ClientOptions o;
    for (auto& [id, a] : peers_) o.endpoints.push_back(a);
    o.token = token;
    o.client_id = client_id;
    o.deadline = 10s;
    return std::move(Client::Create(o)).value();
  }
  raft::NodeId Leader(Client& c) {
    for (auto& [id, a] : peers_) {
      if (!nodes_[id]) continue;
      Result<NodeStatus> s = c.StatusOf(a);
      if (s.ok() && s->role == "leader") return id;
    }
    return 0;
  }

  std::filesystem::path dir_;
  std::map<raft::NodeId, std::string> peers_;
  std::unique_ptr<Node> nodes_[4];
};

}  // namespace cohort::coordinator
