#pragma once
// A tiny in-process cluster for transcript tests of the Raft core (the style
// of etcd-io/raft's interaction tests): build nodes, campaign, stabilize, then
// compare the exact messages delivered, one line each, e.g.
//   "1->2 Vote term=2 log=1/3"
// Messages are delivered in FIFO order; each delivery is followed by the
// receiver's Ready (persisting is a no-op here; Storage has its own tests).

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "coordinator/raft/raft.h"

namespace cohort::coordinator::raft::testing {

inline std::string Describe(const Message& m) {
  std::ostringstream os;
  os << m.from << "->" << m.to << " " << MessageTypeName(m.type) << " term=" << m.term;
  switch (m.type) {
    case MessageType::kPreVote:
    case MessageType::kVote:
      os << " log=" << m.log_term << "/" << m.index;
      if (m.context == kCampaignTransfer) os << " transfer";
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp:
      if (m.reject) os << " reject";
      break;
    case MessageType::kApp: {
      os << " prev=" << m.log_term << "/" << m.index << " commit=" << m.commit << " entries=[";
      for (size_t i = 0; i < m.entries.size(); ++i) {
        os << (i ? " " : "") << m.entries[i].term << "/" << m.entries[i].index;
        if (m.entries[i].type == EntryType::kConfChange) os << ":conf";
      }
      os << "]";
      break;
    }
    case MessageType::kAppResp:
      os << " index=" << m.index;
      if (m.reject) os << " reject hint=" << m.reject_hint;
      break;
    case MessageType::kHeartbeat:
      os << " commit=" << m.commit;
      if (m.context) os << " ctx=" << m.context;
      break;
    case MessageType::kHeartbeatResp:
      if (m.context) os << " ctx=" << m.context;
      break;
    case MessageType::kSnap:
      os << " snap=" << m.snapshot->meta.term << "/" << m.snapshot->meta.index;
      break;
    case MessageType::kTimeoutNow:
      break;
    case MessageType::kReadIndex:
      os << " id=" << m.context;
      break;
    case MessageType::kReadIndexResp:
      os << " index=" << m.index << " id=" << m.context;
      break;
  }
  return os.str();
}

struct ClusterOptions {
  bool pre_vote = true;
  bool check_quorum = false;
  int election_tick = 10;
  int heartbeat_tick = 1;
  size_t max_inflight = 256;
  size_t max_entries_per_msg = 64;
};

// An InitialState whose log holds entries of the given terms at 1, 2, ...
inline InitialState LogWithTerms(const std::vector<uint64_t>& terms, uint64_t current_term,
                                 std::vector<NodeId> voters) {
  InitialState st;
  st.snapshot.meta.conf.voters = std::move(voters);
  for (size_t i = 0; i < terms.size(); ++i) {
    Entry e;
    e.term = terms[i];
    e.index = i + 1;
    e.data = "x" + std::to_string(i + 1);
    st.entries.push_back(e);
  }
  st.hard_state.term = current_term;
  return st;
}

class Cluster {
 public:
  explicit Cluster(std::vector<NodeId> voters, ClusterOptions o = {}) : opts_(o) {
    for (NodeId id : voters) AddNode(id, Bootstrap(voters));
  }
  Cluster(std::map<NodeId, InitialState> states, ClusterOptions o) : opts_(o) {
    for (auto& [id, st] : states) AddNode(id, std::move(st));
  }

  void AddNode(NodeId id, InitialState st) {
    Config c;
    c.id = id;
    c.election_tick = opts_.election_tick;
    c.heartbeat_tick = opts_.heartbeat_tick;
    c.pre_vote = opts_.pre_vote;
    c.check_quorum = opts_.check_quorum;
    c.seed = 42;
    c.max_inflight_msgs = opts_.max_inflight;
    c.max_entries_per_msg = opts_.max_entries_per_msg;
    nodes_[id] = std::make_unique<Raft>(c, std::move(st));
    applied_[id].clear();
  }

  Raft& operator[](NodeId id) { return *nodes_.at(id); }
  const std::vector<Entry>& applied(NodeId id) { return applied_[id]; }
  std::vector<ReadState>& reads(NodeId id) { return reads_[id]; }
  std::vector<Snapshot>& snapshots_applied(NodeId id) { return snaps_[id]; }

  // Drains one node's Ready: messages go to the queue, committed entries to
  // applied(id), read states to reads(id).
  void Process(NodeId id) {
    Raft& r = *nodes_.at(id);
    while (r.HasReady()) {
      Ready rd = r.GetReady();
      if (rd.snapshot) snaps_[id].push_back(*rd.snapshot);
      for (Message& m : rd.messages) queue_.push_back(std::move(m));
      for (const Entry& e : rd.committed_entries) applied_[id].push_back(e);
      for (const ReadState& s : rd.read_states) reads_[id].push_back(s);
      r.Advance(rd);
    }
  }
  void ProcessAll() {
    for (auto& [id, n] : nodes_) Process(id);
  }

  // Delivers queued messages until none are left; returns what was delivered.
  std::vector<std::string> Stabilize(size_t limit = 100000) {
    std::vector<std::string> out;
    ProcessAll();
    while (!queue_.empty() && out.size() < limit) {
      Message m = std::move(queue_.front());
      queue_.pop_front();
      if (Dropped(m)) continue;
      out.push_back(Describe(m));
      nodes_.at(m.to)->Step(m);
      Process(m.to);
    }
    return out;
  }
  // Messages queued now, described, without delivering them.
  std::vector<std::string> Pending() {
    ProcessAll();
    std::vector<std::string> out;
    for (const Message& m : queue_) out.push_back(Describe(m));
    return out;
  }
  void ClearQueue() {
    ProcessAll();
    queue_.clear();
  }
  std::deque<Message>& queue() { return queue_; }

  void Campaign(NodeId id) {
    nodes_.at(id)->Campaign();
    Process(id);
  }
  void Tick(NodeId id, int n = 1) {
    for (int i = 0; i < n; ++i) {
      nodes_.at(id)->Tick();
      Process(id);
    }
  }
  void Step(const Message& m) {
    nodes_.at(m.to)->Step(m);
    Process(m.to);
  }

  // Network faults: an isolated node neither sends nor receives.
  void Isolate(NodeId id) { isolated_.push_back(id); }
  void Heal() {
    isolated_.clear();
    drop_ = nullptr;
  }
  void DropIf(std::function<bool(const Message&)> f) { drop_ = std::move(f); }

 private:
  bool Dropped(const Message& m) const {
    for (NodeId id : isolated_) {
      if (m.from == id || m.to == id) return true;
    }
    return nodes_.count(m.to) == 0 || (drop_ && drop_(m));
  }
  ClusterOptions opts_;
  std::map<NodeId, std::unique_ptr<Raft>> nodes_;
  std::map<NodeId, std::vector<Entry>> applied_;
  std::map<NodeId, std::vector<ReadState>> reads_;
  std::map<NodeId, std::vector<Snapshot>> snaps_;
  std::deque<Message> queue_;
  std::vector<NodeId> isolated_;
  std::function<bool(const Message&)> drop_;
};

}  // namespace cohort::coordinator::raft::testing
