#pragma once
// A single-node coordinator inside the calling process, for `cohort launch`
// and tests: one Raft voter (it elects itself within an election timeout),
// its WAL in `data_dir`, serving the whole client API on `host:port` (port 0:
// the system picks one; address() says which).
//
// Thread safety: Stop() and the destructor may be called from any one thread;
// address() is immutable.

#include <memory>
#include <string>

#include "coordinator/server/node.h"
#include "core/status.h"

namespace cohort::coordinator {

struct EmbeddedOptions {
  std::string data_dir;  // created if missing; reused on a restart (the job state survives)
  std::string token;     // the shared secret clients must present (non-empty)
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
};

class EmbeddedCoordinator {
 public:
  // InvalidArgument for bad options; Unavailable when the port cannot be bound;
  // DataLoss when data_dir holds a WAL that does not recover.
  static Result<std::unique_ptr<EmbeddedCoordinator>> Start(EmbeddedOptions options);
  ~EmbeddedCoordinator() { Stop(); }
  EmbeddedCoordinator(const EmbeddedCoordinator&) = delete;
  EmbeddedCoordinator& operator=(const EmbeddedCoordinator&) = delete;

  // "host:port" for ClientOptions::endpoints.
  const std::string& address() const { return address_; }
  // Stops serving and joins the node's threads; idempotent.
  void Stop() {
    if (node_) node_->Shutdown();
  }

 private:
  EmbeddedCoordinator() = default;
  std::unique_ptr<Node> node_;
  std::string address_;
};

}  // namespace cohort::coordinator
