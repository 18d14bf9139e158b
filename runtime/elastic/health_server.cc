#include "runtime/elastic/health_server.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "proto/health.grpc.pb.h"

namespace cohort::elastic {

namespace {
constexpr std::chrono::milliseconds kHealthShutdownGrace{100};
}  // namespace

class HealthServer::Service final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* resp) override {
    if (!req->service().empty()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "unknown service '" + req->service() + "'; this worker serves only \"\"");
    }
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

HealthServer::HealthServer() : service_(std::make_unique<Service>()) {}

HealthServer::~HealthServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + kHealthShutdownGrace);
}

Result<std::unique_ptr<HealthServer>> HealthServer::Start() {
  auto h = std::unique_ptr<HealthServer>(new HealthServer());
  grpc::ServerBuilder b;
  b.AddListeningPort("0.0.0.0:0", grpc::InsecureServerCredentials(), &h->port_);
  b.RegisterService(h->service_.get());
  h->server_ = b.BuildAndStart();
  if (!h->server_ || h->port_ == 0) {
    return Unavailable("cannot start the worker's health server on an ephemeral port");
  }
  return h;
}

}  // namespace cohort::elastic
