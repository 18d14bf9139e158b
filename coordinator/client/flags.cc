#include "coordinator/client/flags.h"

#include <exception>
#include <sstream>
#include <stdexcept>

#include "coordinator/client/client_limits.h"
#include "coordinator/raft/limits.h"
#include "coordinator/raft/types.h"
#include "core/file_util.h"

namespace cohort::coordinator {

Result<std::vector<std::string>> ParseEndpoints(const std::string& spec) {
  std::vector<std::string> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.find(':') == std::string::npos) {
      return InvalidArgument("--coordinator: '" + item + "' is not HOST:PORT");
    }
    out.push_back(item);
  }
  if (out.empty())
    return InvalidArgument("--coordinator: no endpoint given (expected HOST:PORT,HOST:PORT,...)");
  if (out.size() > limits::kMaxEndpoints) {
    return InvalidArgument("--coordinator: " + std::to_string(out.size()) + " endpoints; at most " +
                           std::to_string(limits::kMaxEndpoints));
  }
  return out;
}

Result<std::map<uint64_t, std::string>> ParsePeers(const std::string& spec) {
  std::map<raft::NodeId, std::string> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t eq = item.find('=');
    size_t colon = item.rfind(':');
    if (eq == std::string::npos || eq == 0 || colon == std::string::npos || colon < eq ||
        colon + 1 == item.size()) {
      return InvalidArgument("--peers: '" + item + "' is not ID=HOST:PORT");
    }
    raft::NodeId id = 0;
    try {
      size_t used = 0;
      id = std::stoull(item.substr(0, eq), &used);
      if (used != eq) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      return InvalidArgument("--peers: '" + item + "' has a node id that is not a number");
    }
    if (id == raft::kNoNode)
      return InvalidArgument("--peers: node ids start at 1 ('" + item + "')");
    if (!out.emplace(id, item.substr(eq + 1)).second) {
      return InvalidArgument("--peers: node " + std::to_string(id) + " is listed twice");
    }
  }
  if (out.empty())
    return InvalidArgument("--peers: no peers given (expected 1=HOST:PORT,2=HOST:PORT,...)");
  if (out.size() > raft::limits::kMaxVoters) {
    return InvalidArgument("--peers: " + std::to_string(out.size()) + " nodes; at most " +
                           std::to_string(raft::limits::kMaxVoters));
  }
  return out;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  Result<std::string> contents = ReadFile(path);
  if (!contents.ok()) return contents.status().WithContext("token file");
  std::string t = *contents;
  if (t.size() > limits::kMaxTokenBytes) {
    return InvalidArgument("token file " + path + " holds " + std::to_string(t.size()) +
                           " bytes; at most " + std::to_string(limits::kMaxTokenBytes));
  }
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!t.empty() && space(t.back())) t.pop_back();
  size_t start = 0;
  while (start < t.size() && space(t[start])) ++start;
  t = t.substr(start);
  if (t.empty())
    return InvalidArgument("token file " + path +
                           " is empty; put the cluster's shared secret in it");
  return t;
}

}  // namespace cohort::coordinator
