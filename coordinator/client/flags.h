#pragma once
// Parsers for the values a user gives to reach or form a coordinator group:
// --coordinator (a client's endpoint list), --peers (a node's voter list) and
// --token-file (the cluster's shared secret). Used by the client library's
// callers and by the node's command (tools/coordinator_cmd.cc); they include
// no server header. Pure functions apart from ReadTokenFile's one file read;
// thread-safe.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace cohort::coordinator {

// Splits "host:port,host:port"; InvalidArgument when empty or too many
// (limits::kMaxEndpoints).
Result<std::vector<std::string>> ParseEndpoints(const std::string& spec);

// Parses "1=host:port,2=host:port,..." into node id -> "host:port" (ids are
// raft::NodeId, at most raft::limits::kMaxVoters of them). InvalidArgument
// naming the bad item.
Result<std::map<uint64_t, std::string>> ParsePeers(const std::string& spec);

// Reads a token file: its contents with surrounding whitespace removed.
// NotFound / InvalidArgument (empty or over limits::kMaxTokenBytes).
Result<std::string> ReadTokenFile(const std::string& path);

}  // namespace cohort::coordinator
