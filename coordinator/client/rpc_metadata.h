#pragma once
// The gRPC metadata of the coordinator API (proto/coordinator.proto), which
// the client library sends and reads and the node (coordinator/server/node.h)
// checks and writes: every RPC carries the cluster's shared secret in
// kTokenMetadata; a follower's refusal names the leader in the trailing
// kLeaderIdMetadata and kLeaderAddressMetadata.

namespace cohort::coordinator {

inline constexpr char kTokenMetadata[] = "cohort-token";
inline constexpr char kLeaderIdMetadata[] = "cohort-leader-id";
inline constexpr char kLeaderAddressMetadata[] = "cohort-leader-address";

}  // namespace cohort::coordinator
