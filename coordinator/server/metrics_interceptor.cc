// The RPC-counting interceptor (coordinator/server/metrics_interceptor.h).
#include "coordinator/server/metrics_interceptor.h"

#include <iterator>
#include <utility>

namespace cohort::coordinator {
namespace {

// Reports one RPC's status when it is sent.
class RpcCounter final : public grpc::experimental::Interceptor {
 public:
  RpcCounter(RpcObserver observe, std::string method)
      : observe_(std::move(observe)), method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      observe_(method_, m->GetSendStatus());
    }
    m->Proceed();
  }

 private:
  RpcObserver observe_;
  std::string method_;
};

}  // namespace

const char* GrpcCodeName(grpc::StatusCode c) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN";
}

grpc::experimental::Interceptor* RpcCounterFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // "/cohort.coordinator.Coordinator/Put" -> "Coordinator/Put"
  std::string m = info->method() != nullptr ? info->method() : "";
  const size_t slash = m.rfind('/');
  const size_t dot = m.rfind('.', slash);
  if (slash != std::string::npos && dot != std::string::npos) m = m.substr(dot + 1);
  return new RpcCounter(observe_, std::move(m));
}

}  // namespace cohort::coordinator
