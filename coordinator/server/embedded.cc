#include "coordinator/server/embedded.h"

namespace cohort::coordinator {

Result<std::unique_ptr<EmbeddedCoordinator>> EmbeddedCoordinator::Start(EmbeddedOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgument("embedded coordinator: port " + std::to_string(options.port) +
                           " is not 0..65535");
  }
  if (options.host.empty()) return InvalidArgument("embedded coordinator: empty host");
  NodeOptions no;
  no.id = 1;
  no.peers[1] = options.host + ":" + std::to_string(options.port);
  no.data_dir = std::move(options.data_dir);
  no.token = std::move(options.token);
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<Node> node, Node::Start(std::move(no)));
  auto e = std::unique_ptr<EmbeddedCoordinator>(new EmbeddedCoordinator());
  e->address_ = node->address();
  e->node_ = std::move(node);
  return e;
}

}  // namespace cohort::coordinator
