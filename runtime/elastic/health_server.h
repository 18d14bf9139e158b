#pragma once
// A worker's health server: grpc.health.v1 (proto/health.proto) on an
// ephemeral port of every interface, which the coordinator's job controller
// probes. The server as a whole ("") is SERVING while the process runs; a
// hung process (SIGSTOP) lets probes run to their deadline, a dead one
// refuses them.

#include <memory>

#include "core/status.h"

namespace grpc {
class Server;
}

namespace cohort::elastic {

class HealthServer {
 public:
  // Unavailable when no port can be bound.
  static Result<std::unique_ptr<HealthServer>> Start();
  ~HealthServer();
  int port() const { return port_; }

 private:
  class Service;
  HealthServer();
  std::unique_ptr<Service> service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace cohort::elastic
