#pragma once
// The node's transport to one peer: Raft messages leave through a bounded
// queue (limits::kPeerQueueMessages), drained by the sender's own thread in
// batches of Step RPCs (proto/coordinator.proto, service Raft), so a slow or
// dead peer fills only its own queue and the Raft thread never blocks on the
// network. The channel redials quickly after a restart or a partition (see
// the keepalive and reconnect bounds in coordinator/server/rpc_limits.h).

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "coordinator/raft/types.h"
#include "proto/coordinator.grpc.pb.h"

namespace cohort::coordinator {

// Sends Raft messages to one peer from its own thread, in batches, through a
// bounded queue. Thread-safe.
class PeerSender {
 public:
  // Called from the sender thread with the outcome of every snapshot sent
  // (false also when one is dropped from a full queue).
  using SnapshotReport = std::function<void(raft::NodeId to, bool ok)>;
  // `token` goes with every RPC (kTokenMetadata); `creds` are the channel's
  // (TLS or plaintext).
  PeerSender(raft::NodeId id, const std::string& address, std::string token,
             std::shared_ptr<grpc::ChannelCredentials> creds, SnapshotReport report);
  ~PeerSender() { Stop(); }
  PeerSender(const PeerSender&) = delete;
  PeerSender& operator=(const PeerSender&) = delete;

  // Never blocks on the network. Drops the message when the queue is full.
  void Enqueue(raft::Message m);
  // Joins the sender thread; idempotent.
  void Stop();

 private:
  void Loop();

  const raft::NodeId id_;
  const std::string token_;
  const SnapshotReport report_;
  std::unique_ptr<cohort::coordinator::v1::Raft::Stub> stub_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<raft::Message> queue_;  // guarded by mu_; at most kPeerQueueMessages
  bool stop_ = false;                // guarded by mu_
  uint64_t dropped_ = 0;             // guarded by mu_
  std::chrono::steady_clock::time_point last_token_error_{};  // sender thread only
  std::thread thread_;
};

}  // namespace cohort::coordinator
