#include "coordinator/raft/raft.h"

#include <algorithm>
#include <utility>

#include "coordinator/raft/encoding.h"

namespace cohort::coordinator::raft {

// ---- Value types -------------------------------------------------------------

std::string ConfChange::Encode() const {
  std::string out;
  PutU8(&out, static_cast<uint8_t>(type));
  PutU64(&out, node);
  return out;
}

bool ConfChange::Decode(const std::string& data, ConfChange* out) {
  Decoder d(data);
  uint8_t t = 0;
  if (!d.U8(&t) || !d.U64(&out->node) || !d.done() || t > 1) return false;
  out->type = static_cast<Type>(t);
  return true;
}

bool ConfState::Contains(NodeId id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}

const char* MessageTypeName(MessageType t) {
  switch (t) {
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResp:
      return "PreVoteResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResp:
      return "VoteResp";
    case MessageType::kApp:
      return "App";
    case MessageType::kAppResp:
      return "AppResp";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResp:
      return "HeartbeatResp";
    case MessageType::kSnap:
      return "Snap";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResp:
      return "ReadIndexResp";
  }
  return "?";
}

const char* RoleName(Role r) {
  switch (r) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

// ---- Construction ----------------------------------------------------------

InitialState Bootstrap(const std::vector<NodeId>& voters) {
  InitialState st;
  std::vector<NodeId> sorted = voters;
  std::sort(sorted.begin(), sorted.end());
  for (NodeId v : sorted) {
    Entry e;
    e.term = 1;
    e.index = st.entries.size() + 1;
    e.type = EntryType::kConfChange;
    e.data = ConfChange{ConfChange::Type::kAddNode, v}.Encode();
    st.entries.push_back(std::move(e));
  }
  st.hard_state = {1, kNoNode, st.entries.size()};
  return st;
}

Raft::Raft(const Config& config, InitialState state)
    : cfg_(config), id_(config.id), rng_(config.seed ^ (config.id * 0x9e3779b97f4a7c15ull)) {
  COHORT_CHECK(id_ != kNoNode) << "Raft node id must be positive";
  COHORT_CHECK(cfg_.heartbeat_tick > 0 && cfg_.election_tick > cfg_.heartbeat_tick)
      << "need 0 < heartbeat_tick < election_tick";
  COHORT_CHECK(cfg_.max_inflight_msgs > 0 && cfg_.max_entries_per_msg > 0);
  snapshot_ = std::move(state.snapshot);
  std::sort(snapshot_.meta.conf.voters.begin(), snapshot_.meta.conf.voters.end());
  uint64_t expect = snapshot_.meta.index + 1;
  for (Entry& e : state.entries) {
    COHORT_CHECK_EQ(e.index, expect) << "InitialState entries are not contiguous";
    ++expect;
    entries_.push_back(std::move(e));
  }
  term_ = state.hard_state.term;
  vote_ = state.hard_state.vote;
  commit_ = std::max(state.hard_state.commit, snapshot_.meta.index);
  COHORT_CHECK(commit_ <= last_index())
      << "commit " << commit_ << " beyond last index " << last_index();
  applied_ = snapshot_.meta.index;
  stabled_ = last_index();
  RecomputeConf();
  prev_hard_state_ = hard_state();
  BecomeFollower(term_, kNoNode);
}

// ---- Log -------------------------------------------------------------------

std::optional<uint64_t> Raft::TermAt(uint64_t index) const {
  if (index == snapshot_.meta.index) return snapshot_.meta.term;
  if (index < snapshot_.meta.index || index > last_index()) return std::nullopt;
  return entries_[index - snapshot_.meta.index - 1].term;
}

const Entry& Raft::EntryAt(uint64_t index) const {
  COHORT_CHECK(index > snapshot_.meta.index && index <= last_index())
      << "EntryAt(" << index << ") outside (" << snapshot_.meta.index << ", " << last_index()
      << "]";
  return entries_[index - snapshot_.meta.index - 1];
}

uint64_t Raft::LastTerm() const { return *TermAt(last_index()); }

bool Raft::MatchTerm(uint64_t index, uint64_t term) const {
  std::optional<uint64_t> t = TermAt(index);
  return t && *t == term;
}

bool Raft::IsUpToDate(uint64_t last_term, uint64_t last_index_in) const {
  // Paper 5.4.1: compare the last terms, then the lengths.
  uint64_t my_term = LastTerm();
  return last_term > my_term || (last_term == my_term && last_index_in >= last_index());
}

void Raft::AppendToLog(std::vector<Entry> ents) {
  for (Entry& e : ents) {
    COHORT_CHECK_EQ(e.index, last_index() + 1) << "append leaves a gap";
    entries_.push_back(std::move(e));
    if (entries_.back().type == EntryType::kConfChange) ApplyConfEntry(entries_.back());
  }
}

void Raft::TruncateFrom(uint64_t index) {
  COHORT_CHECK(index > commit_) << "truncating committed entry " << index << " (commit " << commit_
                                << ")";
  COHORT_CHECK(index > snapshot_.meta.index);
  while (last_index() >= index) entries_.pop_back();
  if (stabled_ >= index) stabled_ = index - 1;
  if (conf_index_ >= index) RecomputeConf();
}

void Raft::CommitTo(uint64_t index) {
  index = std::min(index, last_index());
  if (index > commit_) commit_ = index;
}

void Raft::ApplyConfEntry(const Entry& e) {
  ConfChange cc;
  COHORT_CHECK(ConfChange::Decode(e.data, &cc)) << "undecodable conf change at index " << e.index;
  auto& v = conf_.voters;
  auto it = std::lower_bound(v.begin(), v.end(), cc.node);
  if (cc.type == ConfChange::Type::kAddNode) {
    if (it == v.end() || *it != cc.node) v.insert(it, cc.node);
  } else if (it != v.end() && *it == cc.node) {
    v.erase(it);
  }
  conf_index_ = e.index;
  if (role_ == Role::kLeader) SyncProgressWithConf();
}

void Raft::RecomputeConf() {
  conf_ = snapshot_.meta.conf;
  conf_index_ = 0;
  for (const Entry& e : entries_) {
    if (e.type == EntryType::kConfChange) ApplyConfEntry(e);
  }
  if (role_ == Role::kLeader) SyncProgressWithConf();
}

ConfState Raft::ConfAt(uint64_t index) const {
  ConfState c = snapshot_.meta.conf;
  for (const Entry& e : entries_) {
    if (e.index > index) break;
    if (e.type != EntryType::kConfChange) continue;
    ConfChange cc;
    COHORT_CHECK(ConfChange::Decode(e.data, &cc));
    auto it = std::lower_bound(c.voters.begin(), c.voters.end(), cc.node);
    bool present = it != c.voters.end() && *it == cc.node;
    if (cc.type == ConfChange::Type::kAddNode && !present) c.voters.insert(it, cc.node);
    if (cc.type == ConfChange::Type::kRemoveNode && present) c.voters.erase(it);
  }
  return c;
}

void Raft::SyncProgressWithConf() {
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (!conf_.Contains(it->first)) {
      if (lead_transferee_ == it->first) lead_transferee_ = kNoNode;
      it = progress_.erase(it);
    } else {
      ++it;
    }
  }
  for (NodeId v : conf_.voters) {
    if (progress_.count(v)) continue;
    Progress pr(cfg_.max_inflight_msgs);
    pr.next = last_index() + 1;
    if (v == id_) {
      pr.match = stabled_;
      pr.BecomeReplicate();
      pr.next = last_index() + 1;
    }
    pr.recent_active = true;  // a new member gets one CheckQuorum round of grace
    progress_.emplace(v, std::move(pr));
  }
}

uint64_t Raft::AppliableUpTo() const { return commit_; }

// ---- Roles -----------------------------------------------------------------

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  lead_transferee_ = kNoNode;
  votes_.clear();
  progress_.clear();
  pending_reads_.clear();
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      cfg_.election_tick +
      static_cast<int>(rng_.Uniform(static_cast<uint64_t>(cfg_.election_tick)));
}

void Raft::BecomeFollower(uint64_t term, NodeId lead) {
  Reset(term);
  role_ = Role::kFollower;
  lead_ = lead;
}

void Raft::BecomePreCandidate() {
  COHORT_CHECK(role_ != Role::kLeader);
  // PreVote changes neither term nor vote (dissertation 9.6).
  votes_.clear();
  progress_.clear();
  role_ = Role::kPreCandidate;
  lead_ = kNoNode;
}

void Raft::BecomeCandidate() {
  COHORT_CHECK(role_ != Role::kLeader);
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  COHORT_CHECK(role_ == Role::kCandidate || conf_.voters.size() == 1);
  Reset(term_);
  role_ = Role::kLeader;
  lead_ = id_;
  SyncProgressWithConf();
  // A no-op of the new term: entries of earlier terms commit only once an
  // entry of the current term does (paper 5.4.2), and the ReadIndex and
  // membership-change rules wait for it.
  Entry noop;
  noop.term = term_;
  noop.index = last_index() + 1;
  AppendToLog({std::move(noop)});
  BroadcastAppend();
}

void Raft::Campaign() {
  COHORT_CHECK(!ready_outstanding_) << "Campaign between GetReady and Advance";
  if (role_ == Role::kLeader || !Promotable()) return;
  DoCampaign(cfg_.pre_vote, /*transfer=*/false);
}

void Raft::DoCampaign(bool pre_vote, bool transfer) {
  uint64_t vote_term;
  MessageType type;
  if (pre_vote) {
    BecomePreCandidate();
    vote_term = term_ + 1;
    type = MessageType::kPreVote;
  } else {
    BecomeCandidate();
    vote_term = term_;
    type = MessageType::kVote;
  }
  Poll(id_, true, pre_vote);
  if (role_ == Role::kLeader || (pre_vote && role_ != Role::kPreCandidate)) return;  // won alone
  for (NodeId v : conf_.voters) {
    if (v == id_) continue;
    Message m;
    m.type = type;
    m.to = v;
    m.term = vote_term;
    m.index = last_index();
    m.log_term = LastTerm();
    m.context = transfer ? kCampaignTransfer : 0;
    Send(std::move(m));
  }
}

void Raft::Poll(NodeId from, bool granted, bool pre_vote) {
  if (!votes_.count(from)) votes_[from] = granted;
  size_t yes = 0, no = 0;
  for (NodeId v : conf_.voters) {
    auto it = votes_.find(v);
    if (it == votes_.end()) continue;
    (it->second ? yes : no)++;
  }
  if (yes >= Quorum()) {
    if (pre_vote) {
      DoCampaign(/*pre_vote=*/false, /*transfer=*/false);
    } else {
      BecomeLeader();
    }
  } else if (no >= conf_.voters.size() + 1 - Quorum() && no > 0) {
    BecomeFollower(term_, kNoNode);
  }
}

// ---- Step ------------------------------------------------------------------

void Raft::Send(Message m) {
  m.from = id_;
  if (m.term == 0 && m.type != MessageType::kPreVoteResp && m.type != MessageType::kVoteResp &&
      m.type != MessageType::kPreVote && m.type != MessageType::kVote) {
    m.term = term_;
  }
  msgs_.push_back(std::move(m));
}

void Raft::Step(const Message& m) {
  COHORT_CHECK(!ready_outstanding_) << "Step between GetReady and Advance";
  if (m.to != id_ || m.from == kNoNode || m.from == id_) return;

  if (m.term > term_) {
    if (m.type == MessageType::kPreVote || m.type == MessageType::kVote) {
      bool force = m.context == kCampaignTransfer;
      bool in_lease =
          cfg_.check_quorum && lead_ != kNoNode && election_elapsed_ < cfg_.election_tick;
      // Dissertation 9.6: a server that heard from a leader within the
      // minimum election timeout neither grants a vote nor adopts the term.
      if (!force && in_lease) return;
    }
    if (m.type == MessageType::kPreVote) {
      // Never change term for a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the term we would campaign at.
    } else if (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A leader of an older term: this node may have advanced its term in a
      // partition, and with PreVote/CheckQuorum nobody else will tell that
      // leader. Answer so that it steps down.
      Message r;
      r.type = MessageType::kAppResp;
      r.to = m.from;
      Send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.term = term_;
      r.reject = true;
      Send(std::move(r));
    }
    return;  // everything else from an older term is stale
  }

  if (m.type == MessageType::kPreVote || m.type == MessageType::kVote) {
    HandleVote(m);
    return;
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
}

void Raft::HandleVote(const Message& m) {
  bool pre = m.type == MessageType::kPreVote;
  // Paper 5.2: at most one vote per term (first come, first served); a
  // follower that knows a leader of this term votes for no one else.
  bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) || (pre && m.term > term_);
  Message r;
  r.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  r.to = m.from;
  if (can_vote && IsUpToDate(m.log_term, m.index)) {
    r.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  Send(std::move(r));
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      break;
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Dissertation 3.10: start an election at once, skipping PreVote; the
      // vote carries kCampaignTransfer so voters ignore their lease.
      if (Promotable()) DoCampaign(/*pre_vote=*/false, /*transfer=*/true);
      break;
    case MessageType::kReadIndexResp:
      read_states_.push_back({m.index, m.context});
      break;
    default:
      break;
  }
}

void Raft::StepCandidate(const Message& m) {
  bool pre = role_ == Role::kPreCandidate;
  switch (m.type) {
    case MessageType::kApp:
      BecomeFollower(m.term, m.from);
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kSnap:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    case MessageType::kPreVoteResp:
      if (pre) Poll(m.from, !m.reject, true);
      break;
    case MessageType::kVoteResp:
      if (!pre) Poll(m.from, !m.reject, false);
      break;
    default:
      break;
  }
}

void Raft::HandleAppend(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  if (m.index < commit_) {
    r.index = commit_;  // stale: everything up to commit is known to match
    Send(std::move(r));
    return;
  }
  if (!MatchTerm(m.index, m.log_term)) {
    // Paper 5.3: reject; the hint lets the leader skip back in one step.
    r.index = m.index;
    r.reject = true;
    r.reject_hint = std::min(m.index, last_index());
    r.log_term = TermAt(r.reject_hint).value_or(0);
    Send(std::move(r));
    return;
  }
  uint64_t last_new = m.index + m.entries.size();
  // Find the first entry that is new or conflicts; keep what matches (an
  // old, reordered append must not truncate entries a later one added).
  size_t i = 0;
  for (; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    if (!MatchTerm(e.index, e.term)) break;
  }
  if (i < m.entries.size()) {
    uint64_t conflict = m.entries[i].index;
    if (conflict <= last_index()) TruncateFrom(conflict);
    std::vector<Entry> rest(m.entries.begin() + static_cast<ptrdiff_t>(i), m.entries.end());
    AppendToLog(std::move(rest));
  }
  CommitTo(std::min(m.commit, last_new));
  r.index = last_new;
  Send(std::move(r));
}

void Raft::HandleHeartbeat(const Message& m) {
  // The leader sends min(match, commit), so this never passes our matching prefix.
  CommitTo(m.commit);
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.context = m.context;
  Send(std::move(r));
}

void Raft::HandleSnapshot(const Message& m) {
  COHORT_CHECK(m.snapshot.has_value()) << "kSnap without a snapshot";
  const Snapshot& s = *m.snapshot;
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  if (s.meta.index <= commit_) {
    r.index = commit_;
  } else if (MatchTerm(s.meta.index, s.meta.term)) {
    // We already have the snapshot's last entry: fast-forward the commit.
    CommitTo(s.meta.index);
    r.index = last_index();
  } else {
    // Paper 7: discard the whole log and take the snapshot.
    snapshot_ = s;
    std::sort(snapshot_.meta.conf.voters.begin(), snapshot_.meta.conf.voters.end());
    entries_.clear();
    commit_ = s.meta.index;
    applied_ = s.meta.index;
    stabled_ = s.meta.index;
    snapshot_pending_ = true;
    RecomputeConf();
    r.index = last_index();
  }
  Send(std::move(r));
}

void Raft::StepLeader(const Message& m) {
  if (m.type == MessageType::kReadIndex) {
    HandleReadIndexOnLeader(m.from, m.context);
    return;
  }
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;  // not a member (any more)
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppResp:
      pr.recent_active = true;
      HandleAppResp(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      pr.recent_active = true;
      HandleHeartbeatResp(m, pr);
      break;
    default:
      break;
  }
}

void Raft::HandleAppResp(const Message& m, Progress& pr) {
  NodeId from = m.from;
  if (m.reject) {
    if (pr.MaybeDecrTo(m.index, m.reject_hint)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAppend(from, /*send_if_empty=*/true);
    }
    return;
  }
  bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr.match >= pr.pending_snapshot) pr.BecomeReplicate();
      break;
    case ProgressState::kReplicate:
      pr.inflights.FreeLE(m.index);
      break;
  }
  if (MaybeCommit()) {
    if (role_ != Role::kLeader) return;  // stepped down after committing its removal
    BroadcastAppend();
  } else if (was_paused) {
    // The follower was waiting (probe or full window): tell it at least the
    // commit index now, as etcd's sendAppend does.
    SendAppend(from, /*send_if_empty=*/true);
  }
  // Fill the window (bounded by the in-flight limit).
  auto it = progress_.find(from);
  if (it == progress_.end()) return;
  while (SendAppend(from, /*send_if_empty=*/false)) {
  }
  if (from == lead_transferee_ && it->second.match == last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = from;
    Send(std::move(t));
  }
}

void Raft::HandleHeartbeatResp(const Message& m, Progress& pr) {
  pr.probe_sent = false;
  if (pr.state == ProgressState::kReplicate && pr.inflights.Full()) pr.inflights.FreeFirstOne();
  if (pr.match < last_index()) SendAppend(m.from, /*send_if_empty=*/true);
  if (m.context == 0 || pending_reads_.empty()) return;
  // A heartbeat answered in this term for round `context` confirms every
  // read registered at or before that round.
  for (PendingRead& r : pending_reads_) {
    if (r.seq > m.context) break;
    if (std::find(r.acks.begin(), r.acks.end(), m.from) == r.acks.end()) r.acks.push_back(m.from);
  }
  while (!pending_reads_.empty()) {
    const PendingRead& r = pending_reads_.front();
    size_t votes = 0;
    for (NodeId a : r.acks) votes += conf_.Contains(a) ? 1 : 0;
    if (votes < Quorum()) break;
    PendingRead done = std::move(pending_reads_.front());
    pending_reads_.pop_front();
    ReleaseRead(done);
  }
}

void Raft::ReleaseRead(const PendingRead& r) {
  if (r.from == id_) {
    read_states_.push_back({r.index, r.request_id});
    return;
  }
  Message resp;
  resp.type = MessageType::kReadIndexResp;
  resp.to = r.from;
  resp.index = r.index;
  resp.context = r.request_id;
  Send(std::move(resp));
}

void Raft::HandleReadIndexOnLeader(NodeId from, uint64_t request_id) {
  // Dissertation 6.4: the read index is the commit index once this leader has
  // committed an entry of its term; it is served after a quorum confirms
  // that this node was still the leader when the read arrived.
  if (TermAt(commit_) != term_) return;
  PendingRead r;
  r.index = commit_;
  r.request_id = request_id;
  r.from = from;
  if (conf_.Contains(id_)) r.acks.push_back(id_);
  size_t votes = r.acks.size();
  if (votes >= Quorum()) {
    ReleaseRead(r);
    return;
  }
  if (pending_reads_.size() >= limits::kMaxPendingReads) return;
  r.seq = ++read_seq_;
  pending_reads_.push_back(std::move(r));
  BroadcastHeartbeat(read_seq_);
}

// ---- Leader replication ----------------------------------------------------

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  if (to == id_) return false;
  auto it = progress_.find(to);
  if (it == progress_.end()) return false;
  Progress& pr = it->second;
  if (pr.IsPaused()) return false;
  uint64_t prev = pr.next - 1;
  std::optional<uint64_t> prev_term = TermAt(prev);
  if (!prev_term || pr.next < first_index()) {
    // The entries are compacted away: send the snapshot (paper 7).
    Message m;
    m.type = MessageType::kSnap;
    m.to = to;
    m.snapshot = snapshot_;
    pr.BecomeSnapshot(snapshot_.meta.index);
    Send(std::move(m));
    return false;
  }
  Message m;
  m.type = MessageType::kApp;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = commit_;
  size_t bytes = 0;
  for (uint64_t i = pr.next; i <= last_index() && m.entries.size() < cfg_.max_entries_per_msg;
       ++i) {
    const Entry& e = EntryAt(i);
    if (!m.entries.empty() && bytes + EntryBytes(e) > cfg_.max_bytes_per_msg) break;
    bytes += EntryBytes(e);
    m.entries.push_back(e);
  }
  if (m.entries.empty() && !send_if_empty) return false;
  bool sent_entries = !m.entries.empty();
  if (sent_entries) {
    uint64_t last = m.entries.back().index;
    if (pr.state == ProgressState::kReplicate) {
      pr.next = last + 1;
      pr.inflights.Add(last);
    } else {
      pr.probe_sent = true;
    }
  } else if (pr.state == ProgressState::kProbe) {
    pr.probe_sent = true;
  }
  Send(std::move(m));
  return sent_entries;
}

void Raft::BroadcastAppend() {
  for (auto& [id, pr] : progress_) {
    if (id != id_) SendAppend(id, /*send_if_empty=*/true);
  }
}

void Raft::BroadcastHeartbeat(uint64_t context) {
  for (auto& [id, pr] : progress_) {
    if (id == id_) continue;
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = id;
    m.commit = std::min(pr.match, commit_);
    m.context = context;
    Send(std::move(m));
  }
}

bool Raft::MaybeCommit() {
  if (conf_.voters.empty()) return false;
  std::vector<uint64_t> matches;
  matches.reserve(conf_.voters.size());
  for (NodeId v : conf_.voters) {
    auto it = progress_.find(v);
    matches.push_back(it == progress_.end() ? 0 : it->second.match);
  }
  std::sort(matches.begin(), matches.end(), std::greater<uint64_t>());
  uint64_t candidate = matches[Quorum() - 1];
  // Paper 5.4.2: only an entry of the current term commits by counting
  // replicas; earlier ones commit with it (the Figure 8 scenario).
  if (candidate <= commit_ || TermAt(candidate) != term_) return false;
  commit_ = candidate;
  CheckSelfRemoval();
  return true;
}

void Raft::CheckSelfRemoval() {
  // Dissertation 4.2.2: a leader that is not in the configuration manages the
  // cluster until the change commits, then steps down.
  if (role_ == Role::kLeader && !conf_.Contains(id_) && commit_ >= conf_index_) {
    BecomeFollower(term_, kNoNode);
  }
}

bool Raft::QuorumActive() {
  size_t active = 0;
  for (auto& [id, pr] : progress_) {
    if (id == id_ || pr.recent_active) ++active;
    if (id != id_) pr.recent_active = false;
  }
  return active >= Quorum();
}

// ---- Tick ------------------------------------------------------------------

void Raft::Tick() {
  COHORT_CHECK(!ready_outstanding_) << "Tick between GetReady and Advance";
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    DoCampaign(cfg_.pre_vote, /*transfer=*/false);
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  for (auto& [id, pr] : progress_) {
    if (pr.state == ProgressState::kSnapshot && ++pr.snapshot_ticks >= cfg_.election_tick) {
      pr.BecomeProbe();  // the snapshot was probably lost: start over
    }
  }
  if (election_elapsed_ >= cfg_.election_tick) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum && !QuorumActive()) {
      // Dissertation 9.6: a leader that cannot reach a quorum within an
      // election timeout steps down, so clients find the real leader.
      BecomeFollower(term_, kNoNode);
      return;
    }
    lead_transferee_ = kNoNode;  // a transfer not done in an election timeout is aborted
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat(0);
  }
}

// ---- Client-facing ---------------------------------------------------------

Result<uint64_t> Raft::Propose(std::string data) {
  COHORT_CHECK(!ready_outstanding_) << "Propose between GetReady and Advance";
  if (role_ != Role::kLeader) {
    return FailedPrecondition("node " + std::to_string(id_) + " is not the leader (leader: " +
                              std::to_string(lead_) + "); send the proposal to the leader");
  }
  if (lead_transferee_ != kNoNode) {
    return FailedPrecondition("leadership is being transferred to node " +
                              std::to_string(lead_transferee_) + "; retry at the new leader");
  }
  if (data.size() > limits::kMaxEntryBytes) {
    return InvalidArgument("proposal of " + std::to_string(data.size()) +
                           " bytes exceeds the limit of " + std::to_string(limits::kMaxEntryBytes));
  }
  if (last_index() - commit_ >= limits::kMaxUncommittedEntries) {
    return Unavailable("too many uncommitted entries (" + std::to_string(last_index() - commit_) +
                       "); retry later");
  }
  Entry e;
  e.term = term_;
  e.index = last_index() + 1;
  e.data = std::move(data);
  uint64_t index = e.index;
  AppendToLog({std::move(e)});
  BroadcastAppend();
  return index;
}

Result<uint64_t> Raft::ProposeConfChange(const ConfChange& cc) {
  COHORT_CHECK(!ready_outstanding_);
  if (role_ != Role::kLeader) return FailedPrecondition("not the leader");
  if (lead_transferee_ != kNoNode) return FailedPrecondition("leadership transfer in progress");
  if (conf_index_ > commit_) {
    return FailedPrecondition("membership change at index " + std::to_string(conf_index_) +
                              " is not committed yet; one change at a time");
  }
  if (TermAt(commit_) != term_) {
    return FailedPrecondition("leader has not committed an entry of its term yet; retry shortly");
  }
  if (cc.node == kNoNode) return InvalidArgument("conf change for node 0");
  bool member = conf_.Contains(cc.node);
  if (cc.type == ConfChange::Type::kAddNode) {
    if (member) return InvalidArgument("node " + std::to_string(cc.node) + " is already a voter");
    if (conf_.voters.size() >= limits::kMaxVoters) return InvalidArgument("too many voters");
  } else {
    if (!member) return InvalidArgument("node " + std::to_string(cc.node) + " is not a voter");
    if (conf_.voters.size() == 1) return InvalidArgument("cannot remove the last voter");
  }
  Entry e;
  e.term = term_;
  e.index = last_index() + 1;
  e.type = EntryType::kConfChange;
  e.data = cc.Encode();
  uint64_t index = e.index;
  AppendToLog({std::move(e)});
  BroadcastAppend();
  return index;
}

Status Raft::TransferLeadership(NodeId to) {
  COHORT_CHECK(!ready_outstanding_);
  if (role_ != Role::kLeader) return FailedPrecondition("not the leader");
  if (to == id_) return Status::Ok();
  if (!conf_.Contains(to)) return InvalidArgument("node " + std::to_string(to) + " is not a voter");
  if (lead_transferee_ == to) return Status::Ok();
  lead_transferee_ = to;
  election_elapsed_ = 0;  // the transfer must finish within one election timeout
  if (progress_.at(to).match == last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = to;
    Send(std::move(t));
  } else {
    SendAppend(to, /*send_if_empty=*/true);
  }
  return Status::Ok();
}

Status Raft::ReadIndex(uint64_t request_id) {
  COHORT_CHECK(!ready_outstanding_);
  if (role_ == Role::kLeader) {
    if (TermAt(commit_) != term_) {
      return Unavailable("leader has not committed an entry of its term yet; retry shortly");
    }
    if (pending_reads_.size() >= limits::kMaxPendingReads)
      return Unavailable("too many pending reads");
    HandleReadIndexOnLeader(id_, request_id);
    return Status::Ok();
  }
  if (lead_ == kNoNode) return Unavailable("no known leader; retry after an election");
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = lead_;
  m.context = request_id;
  Send(std::move(m));
  return Status::Ok();
}

void Raft::ReportSnapshot(NodeId to, bool ok) {
  COHORT_CHECK(!ready_outstanding_);
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(to);
  if (it == progress_.end() || it->second.state != ProgressState::kSnapshot) return;
  if (!ok) it->second.pending_snapshot = 0;
  it->second.BecomeProbe();
  it->second.probe_sent = true;  // wait for a heartbeat answer before probing
}

Result<Snapshot> Raft::CreateSnapshot(uint64_t index, std::string data) {
  COHORT_CHECK(!ready_outstanding_);
  if (index <= snapshot_.meta.index) {
    return FailedPrecondition("snapshot index " + std::to_string(index) +
                              " is not above the current one (" +
                              std::to_string(snapshot_.meta.index) + ")");
  }
  if (index > applied_) {
    return FailedPrecondition("snapshot index " + std::to_string(index) + " is above applied (" +
                              std::to_string(applied_) + ")");
  }
  Snapshot s;
  s.meta.index = index;
  s.meta.term = *TermAt(index);
  s.meta.conf = ConfAt(index);
  s.data = std::move(data);
  while (!entries_.empty() && entries_.front().index <= index) entries_.pop_front();
  snapshot_ = s;
  return s;
}

// ---- Ready -----------------------------------------------------------------

bool Raft::HasReady() const {
  if (!msgs_.empty() || !read_states_.empty() || snapshot_pending_) return true;
  if (stabled_ < last_index()) return true;
  if (hard_state() != prev_hard_state_) return true;
  if (SoftState{lead_, role_} != prev_soft_state_) return true;
  return AppliableUpTo() > applied_;
}

Ready Raft::GetReady() {
  COHORT_CHECK(!ready_outstanding_) << "GetReady twice without Advance";
  Ready rd;
  rd.soft_state = {lead_, role_};
  HardState hs = hard_state();
  if (hs != prev_hard_state_) rd.hard_state = hs;
  if (snapshot_pending_) rd.snapshot = snapshot_;
  for (uint64_t i = std::max(stabled_ + 1, first_index()); i <= last_index(); ++i) {
    rd.entries.push_back(EntryAt(i));
  }
  for (uint64_t i = applied_ + 1; i <= AppliableUpTo(); ++i)
    rd.committed_entries.push_back(EntryAt(i));
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.term_or_vote_changed = hs.term != prev_hard_state_.term || hs.vote != prev_hard_state_.vote;
  rd.must_sync = !rd.entries.empty() || rd.snapshot.has_value() || rd.term_or_vote_changed;
  ready_outstanding_ = true;
  return rd;
}

void Raft::Advance(const Ready& rd) {
  COHORT_CHECK(ready_outstanding_) << "Advance without GetReady";
  ready_outstanding_ = false;
  prev_soft_state_ = rd.soft_state;
  if (rd.hard_state) prev_hard_state_ = *rd.hard_state;
  if (rd.snapshot) snapshot_pending_ = false;
  if (!rd.entries.empty()) stabled_ = std::max(stabled_, rd.entries.back().index);
  if (!rd.committed_entries.empty()) applied_ = rd.committed_entries.back().index;
  if (role_ == Role::kLeader) {
    auto it = progress_.find(id_);
    if (it != progress_.end()) it->second.MaybeUpdate(stabled_);
    if (MaybeCommit() && role_ == Role::kLeader) BroadcastAppend();
  }
}

}  // namespace cohort::coordinator::raft
