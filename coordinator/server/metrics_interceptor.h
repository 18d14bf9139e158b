#pragma once
// A gRPC server interceptor that reports every RPC the node answers, with its
// status, by method ("Coordinator/Put", "Raft/Step"): the counts behind
// NodeMetrics::rpcs (coordinator/server/node.h). Thread-safe as long as the
// callback is.

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <string>

namespace cohort::coordinator {

// Called from gRPC threads just before a status is sent.
using RpcObserver = std::function<void(const std::string& method, const grpc::Status& status)>;

// The gRPC code's name as in grpc/status.h (e.g. "PERMISSION_DENIED");
// "UNKNOWN" for a code out of range.
const char* GrpcCodeName(grpc::StatusCode c);

class RpcCounterFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcCounterFactory(RpcObserver observe) : observe_(std::move(observe)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  RpcObserver observe_;
};

}  // namespace cohort::coordinator
