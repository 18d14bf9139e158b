#pragma once
// What every gRPC service of a node does to an RPC: checks the cluster token
// (kTokenMetadata, coordinator/client/rpc_metadata.h) and turns a Status into
// the gRPC status the client library maps back (coordinator/client/client.cc).
// Pure functions; thread-safe.

#include <grpcpp/grpcpp.h>

#include <string>

#include "core/status.h"

namespace cohort::coordinator {

// Whether the call carries `token` in its metadata (compared in constant
// time, so the token cannot be guessed byte by byte).
bool TokenOk(const grpc::ServerContext* ctx, const std::string& token);

// The answer to a call whose token is missing or wrong.
grpc::Status PermissionDenied();

grpc::StatusCode ToGrpcCode(StatusCode c);

}  // namespace cohort::coordinator
