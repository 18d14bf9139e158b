// PeerSender (coordinator/server/peer_transport.h): the channel to one peer
// and the thread that drains its queue into Step RPCs.
#include "coordinator/server/peer_transport.h"

#include <utility>
#include <vector>

#include "coordinator/client/rpc_metadata.h"
#include "coordinator/server/convert.h"
#include "coordinator/server/rpc_limits.h"
#include "core/logging.h"

namespace cohort::coordinator {

using Clock = std::chrono::steady_clock;

PeerSender::PeerSender(raft::NodeId id, const std::string& address, std::string token,
                       std::shared_ptr<grpc::ChannelCredentials> creds, SnapshotReport report)
    : id_(id), token_(std::move(token)), report_(std::move(report)) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(limits::kPeerReconnectMin.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(limits::kPeerReconnectMax.count()));
  // A connection whose packets vanish (a partition, not a refusal) must be
  // dropped and redialled: TCP alone keeps it and backs its retransmissions
  // off to many seconds, so after the partition heals the peer stayed
  // unreachable for 15 s and more (tests/coordinator/cluster/partition_test.sh).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(limits::kPeerKeepalive.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(limits::kPeerKeepaliveTimeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A redial made during the partition must not hang in connect() for
  // gRPC's default 20 s after it heals.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(limits::kPeerConnectTimeout.count()));
  args.SetMaxSendMessageSize(limits::kMaxRpcBytes);
  args.SetMaxReceiveMessageSize(limits::kMaxRpcBytes);
  stub_ = pb::Raft::NewStub(grpc::CreateCustomChannel(address, creds, args));
  thread_ = std::thread([this] { Loop(); });
}

void PeerSender::Enqueue(raft::Message m) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return;
  if (queue_.size() >= limits::kPeerQueueMessages) {
    ++dropped_;
    if (m.type == raft::MessageType::kSnap && report_) report_(id_, false);
    return;
  }
  queue_.push_back(std::move(m));
  cv_.notify_one();
}

void PeerSender::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void PeerSender::Loop() {
  while (true) {
    std::vector<raft::Message> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      while (!queue_.empty() && batch.size() < limits::kMaxMessagesPerBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    pb::StepRequest req;
    bool has_snapshot = false;
    for (const raft::Message& m : batch) {
      ToProto(m, req.add_messages());
      has_snapshot |= m.type == raft::MessageType::kSnap;
    }
    grpc::ClientContext ctx;
    ctx.AddMetadata(kTokenMetadata, token_);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     (has_snapshot ? limits::kPeerRpcDeadline * 50 : limits::kPeerRpcDeadline));
    pb::StepResponse resp;
    grpc::Status s = stub_->Step(&ctx, req, &resp);
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED &&
          Clock::now() - last_token_error_ > std::chrono::seconds(5)) {
        last_token_error_ = Clock::now();  // at most one line per 5 s
        COHORT_LOG_ERROR(
            "node {} refused our token: {}; check that every node has the same --token-file", id_,
            s.error_message());
      }
      COHORT_LOG_DEBUG("send to node {} failed: {}", id_, s.error_message());
    }
    if (has_snapshot && report_) report_(id_, s.ok());
  }
}

}  // namespace cohort::coordinator
