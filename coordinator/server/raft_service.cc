// The node's Raft service (proto/coordinator.proto, service Raft): peers'
// Step RPCs, token-checked, decoded and handed to the Raft thread's inbox
// (Node::Impl::Deliver in coordinator/server/driver.cc).
#include <utility>
#include <vector>

#include "coordinator/server/convert.h"
#include "coordinator/server/node_impl.h"
#include "coordinator/server/rpc_common.h"

namespace cohort::coordinator {
namespace {

class RaftServiceImpl final : public pb::Raft::Service {
 public:
  explicit RaftServiceImpl(Node::Impl* n) : n_(n) {}
  grpc::Status Step(grpc::ServerContext* ctx, const pb::StepRequest* req,
                    pb::StepResponse*) override {
    if (!TokenOk(ctx, n_->opt.token)) return PermissionDenied();
    std::vector<raft::Message> msgs;
    msgs.reserve(req->messages_size());
    for (const pb::Message& m : req->messages()) {
      Result<raft::Message> rm = FromProto(m);
      if (!rm.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, rm.status().message());
      msgs.push_back(std::move(rm).value());
    }
    n_->Deliver(std::move(msgs));
    return grpc::Status::OK;
  }

 private:
  Node::Impl* n_;
};

}  // namespace

std::unique_ptr<pb::Raft::Service> NewRaftService(Node::Impl* n) {
  return std::make_unique<RaftServiceImpl>(n);
}

}  // namespace cohort::coordinator
