#include "coordinator/kv/kv_state_machine.h"

#include <algorithm>
#include <charconv>

#include "coordinator/raft/encoding.h"
#include "coordinator/raft/limits.h"

namespace cohort::coordinator {

// The Raft core's byte encoding (coordinator/raft/encoding.h).
using raft::Decoder;
using raft::PutBytes;
using raft::PutU64;
using raft::PutU8;

namespace {

// The first u64 of a snapshot in the registry's format. The older format
// starts with the number of keys, which is never this large. V3 adds each
// session's refusal reason (KvResult::refusal); V2 snapshots still restore
// (their refusals read as kNone).
constexpr uint64_t kSnapshotMagicV2 = 0xC0407E6157A7E002ull;
constexpr uint64_t kSnapshotMagicV3 = 0xC0407E6157A7E003ull;
// The last byte of an encoded command in the registry's format (the older
// put/cas encoding has no extension).
constexpr uint8_t kCommandExtension = 0xE2;

void PutOptional(std::string* out, const std::optional<std::string>& v) {
  PutU8(out, v.has_value() ? 1 : 0);
  if (v) PutBytes(out, *v);
}

bool GetOptional(Decoder& d, std::optional<std::string>* v) {
  uint8_t has = 0;
  if (!d.U8(&has) || has > 1) return false;
  if (!has) {
    v->reset();
    return true;
  }
  std::string s;
  if (!d.Bytes(&s, raft::limits::kMaxValueBytes)) return false;
  *v = std::move(s);
  return true;
}

void PutStrings(std::string* out, const std::vector<std::string>& v) {
  PutU64(out, v.size());
  for (const std::string& s : v) PutBytes(out, s);
}

bool GetStrings(Decoder& d, std::vector<std::string>* v, size_t max_items) {
  uint64_t n = 0;
  if (!d.U64(&n) || n > max_items) return false;
  v->clear();
  for (uint64_t i = 0; i < n; ++i) {
    std::string s;
    if (!d.Bytes(&s, raft::limits::kMaxKeyBytes)) return false;
    v->push_back(std::move(s));
  }
  return true;
}

void PutManifest(std::string* out, const CheckpointManifest& m) {
  PutU64(out, m.epoch);
  PutU64(out, m.step);
  PutBytes(out, m.path);
  PutBytes(out, m.checksum);
}

bool GetManifest(Decoder& d, CheckpointManifest* m) {
  return d.U64(&m->epoch) && d.U64(&m->step) && d.Bytes(&m->path, raft::limits::kMaxKeyBytes) &&
         d.Bytes(&m->checksum, raft::limits::kMaxKeyBytes);
}

void PutResult(std::string* out, const KvResult& r) {
  PutU8(out, r.ok ? 1 : 0);
  PutOptional(out, r.previous);
  PutU8(out, static_cast<uint8_t>(r.code));
  PutU8(out, static_cast<uint8_t>(r.refusal));
  PutBytes(out, r.error);
  PutU64(out, r.revision);
  PutU64(out, r.id);
  PutU64(out, static_cast<uint64_t>(r.number));
}

// `with_refusal`: a V3 snapshot (the refusal byte follows the code).
bool GetResult(Decoder& d, KvResult* r, bool with_refusal) {
  uint8_t ok = 0, code = 0, refusal = 0;
  uint64_t number = 0;
  bool good = d.U8(&ok) && GetOptional(d, &r->previous) && d.U8(&code) &&
              code <= static_cast<uint8_t>(StatusCode::kPermissionDenied) &&
              (!with_refusal || (d.U8(&refusal) && refusal <= coordinator::kMaxRefusal)) &&
              d.Bytes(&r->error, raft::limits::kMaxValueBytes) && d.U64(&r->revision) &&
              d.U64(&r->id) && d.U64(&number);
  r->ok = ok != 0;
  r->code = static_cast<StatusCode>(code);
  r->refusal = static_cast<Refusal>(refusal);
  r->number = static_cast<int64_t>(number);
  return good;
}

KvResult Refuse(StatusCode code, Refusal refusal, std::string why) {
  KvResult r;
  r.code = code;
  r.refusal = refusal;
  r.error = std::move(why);
  return r;
}

// The refusal of a fenced command whose epoch is not the job's.
KvResult RefuseEpoch(uint64_t cmd_epoch, uint64_t job_epoch) {
  if (cmd_epoch < job_epoch) {
    return Refuse(StatusCode::kFailedPrecondition, Refusal::kStaleEpoch,
                  "stale epoch " + std::to_string(cmd_epoch) + ", job is at epoch " +
                      std::to_string(job_epoch) + "; read the job again and rejoin");
  }
  return Refuse(StatusCode::kFailedPrecondition, Refusal::kEpochAhead,
                "epoch " + std::to_string(cmd_epoch) + " is ahead of the job, which is at epoch " +
                    std::to_string(job_epoch));
}

bool ParseInt(std::string_view text, int64_t* v) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *v);
  return ec == std::errc() && end == text.data() + text.size();
}

bool IsFenced(KvCommand::Op op) {
  switch (op) {
    case KvCommand::Op::kJoin:
    case KvCommand::Op::kLeave:
    case KvCommand::Op::kHeartbeat:
    case KvCommand::Op::kFail:
    case KvCommand::Op::kCommitEpoch:
    case KvCommand::Op::kProposeCheckpoint:
    case KvCommand::Op::kCommitCheckpoint:
      return true;
    default:
      return false;
  }
}

}  // namespace

// ---- Encoding -------------------------------------------------------------------

std::string KvCommand::Encode() const {
  std::string out;
  PutU8(&out, static_cast<uint8_t>(op));
  PutU64(&out, client_id);
  PutU64(&out, seq);
  PutBytes(&out, key);
  PutBytes(&out, value);
  PutOptional(&out, expected);
  PutU64(&out, lease);
  PutU64(&out, epoch);
  PutU64(&out, now_ms);
  PutU64(&out, ttl_ms);
  PutU64(&out, step);
  PutBytes(&out, member);
  PutBytes(&out, address);
  PutStrings(&out, members);
  PutU8(&out, kCommandExtension);
  return out;
}

Result<KvCommand> KvCommand::Decode(std::string_view data) {
  Decoder d(data);
  KvCommand c;
  uint8_t op = 0;
  bool ok = d.U8(&op) && op <= static_cast<uint8_t>(Op::kLeaseExpire) && d.U64(&c.client_id) &&
            d.U64(&c.seq) && d.Bytes(&c.key, raft::limits::kMaxKeyBytes) &&
            d.Bytes(&c.value, raft::limits::kMaxValueBytes) && GetOptional(d, &c.expected);
  if (ok && !d.done()) {
    uint8_t ext = 0;
    ok = d.U64(&c.lease) && d.U64(&c.epoch) && d.U64(&c.now_ms) && d.U64(&c.ttl_ms) &&
         d.U64(&c.step) && d.Bytes(&c.member, raft::limits::kMaxKeyBytes) &&
         d.Bytes(&c.address, raft::limits::kMaxKeyBytes) &&
         GetStrings(d, &c.members, raft::limits::kMaxMembers) && d.U8(&ext) &&
         ext == kCommandExtension;
  } else if (ok && op > static_cast<uint8_t>(Op::kCas)) {
    ok = false;  // only put and cas exist in the older encoding
  }
  if (!ok || !d.done()) {
    return InvalidArgument("not a key-value command (" + std::to_string(data.size()) + " bytes)");
  }
  c.op = static_cast<KvCommand::Op>(op);
  return c;
}

// ---- Apply ----------------------------------------------------------------------

KvResult KvStateMachine::Apply(uint64_t index, const KvCommand& cmd) {
  if (cmd.client_id == 0) {
    KvResult r = Execute(cmd);
    r.revision = revision_;
    return r;
  }
  auto sit = sessions_.find(cmd.client_id);
  if (sit != sessions_.end()) {
    if (cmd.seq == sit->second.last_seq) {
      KvResult r = sit->second.last_result;
      r.duplicate = true;
      return r;
    }
    if (cmd.seq < sit->second.last_seq) {
      KvResult r;
      r.stale = true;
      return r;
    }
  }
  KvResult r = Execute(cmd);
  r.revision = revision_;
  Session& s = sessions_[cmd.client_id];
  s.last_seq = cmd.seq;
  s.last_index = index;
  s.last_result = r;
  if (sessions_.size() > raft::limits::kMaxClientSessions) {
    auto oldest = sessions_.begin();
    for (auto i = sessions_.begin(); i != sessions_.end(); ++i) {
      if (i->second.last_index < oldest->second.last_index) oldest = i;
    }
    sessions_.erase(oldest);
  }
  return r;
}

KvResult KvStateMachine::Execute(const KvCommand& cmd) {
  if (IsFenced(cmd.op) && cmd.epoch != epoch_) return RefuseEpoch(cmd.epoch, epoch_);
  switch (cmd.op) {
    case KvCommand::Op::kPut:
    case KvCommand::Op::kCas:
    case KvCommand::Op::kAdd:
    case KvCommand::Op::kDelete:
      return ExecuteKv(cmd);
    case KvCommand::Op::kLeaseGrant:
    case KvCommand::Op::kLeaseKeepalive:
    case KvCommand::Op::kLeaseRevoke:
    case KvCommand::Op::kLeaseExpire:
      return ExecuteLease(cmd);
    default:
      return ExecuteJob(cmd);
  }
}

KvResult KvStateMachine::ExecuteKv(const KvCommand& cmd) {
  KvResult r;
  auto it = data_.find(cmd.key);
  if (it != data_.end()) r.previous = it->second.value;
  if (cmd.lease != 0 && cmd.op != KvCommand::Op::kDelete && leases_.count(cmd.lease) == 0) {
    return Refuse(StatusCode::kNotFound, Refusal::kUnknownLease,
                  "lease " + std::to_string(cmd.lease) + " does not exist (expired or revoked)");
  }
  switch (cmd.op) {
    case KvCommand::Op::kPut:
      r.ok = true;
      SetKey(cmd.key, cmd.value, cmd.lease);
      break;
    case KvCommand::Op::kCas:
      r.ok = r.previous == cmd.expected;
      if (r.ok) SetKey(cmd.key, cmd.value, cmd.lease);
      break;
    case KvCommand::Op::kAdd: {
      int64_t delta = 0, current = 0;
      if (!ParseInt(cmd.value, &delta)) {
        return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand,
                      "add: delta '" + cmd.value + "' is not a decimal int64");
      }
      if (r.previous && !ParseInt(*r.previous, &current)) {
        return Refuse(
            StatusCode::kInvalidArgument, Refusal::kInvalidCommand,
            "add: key '" + cmd.key + "' holds a value that is not a decimal int64 counter");
      }
      if (__builtin_add_overflow(current, delta, &r.number)) {
        return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand,
                      "add: counter '" + cmd.key + "' would overflow");
      }
      r.ok = true;
      SetKey(cmd.key, std::to_string(r.number), cmd.lease);
      break;
    }
    case KvCommand::Op::kDelete:
      r.ok = it != data_.end();
      if (r.ok) {
        ++revision_;
        DeleteKey(cmd.key);
      }
      break;
    default:
      break;
  }
  return r;
}

void KvStateMachine::SetKey(const std::string& key, std::string value, uint64_t lease) {
  ++revision_;
  auto [it, inserted] = data_.try_emplace(key);
  KvEntry& e = it->second;
  if (inserted) e.create_revision = revision_;
  e.mod_revision = revision_;
  e.value = std::move(value);
  if (e.lease != lease) {
    Detach(key, e.lease);
    e.lease = lease;
    if (lease != 0) leases_[lease].keys.insert(key);
  }
}

void KvStateMachine::Detach(const std::string& key, uint64_t lease) {
  if (lease == 0) return;
  auto it = leases_.find(lease);
  if (it != leases_.end()) it->second.keys.erase(key);
}

void KvStateMachine::DeleteKey(const std::string& key) {
  auto it = data_.find(key);
  if (it == data_.end()) return;
  Detach(key, it->second.lease);
  data_.erase(it);
  tombstones_.emplace_back(revision_, key);
  while (tombstones_.size() > raft::limits::kMaxTombstones) {
    compacted_revision_ = tombstones_.front().first;
    tombstones_.pop_front();
  }
}

KvResult KvStateMachine::ExecuteLease(const KvCommand& cmd) {
  KvResult r;
  if (cmd.op == KvCommand::Op::kLeaseGrant) {
    if (cmd.ttl_ms == 0 || cmd.ttl_ms > raft::limits::kMaxLeaseTtlMs) {
      return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand,
                    "lease TTL of " + std::to_string(cmd.ttl_ms) + " ms; give 1 ms .. " +
                        std::to_string(raft::limits::kMaxLeaseTtlMs));
    }
    if (leases_.size() >= raft::limits::kMaxLeases) {
      return Refuse(StatusCode::kUnavailable, Refusal::kLimitReached,
                    std::to_string(raft::limits::kMaxLeases) +
                        " leases are live; revoke some or wait for them to expire");
    }
    uint64_t id = next_lease_++;
    Lease& l = leases_[id];
    l.ttl_ms = cmd.ttl_ms;
    l.expires_at_ms = cmd.now_ms + cmd.ttl_ms;
    r.ok = true;
    r.id = id;
    return r;
  }
  auto it = leases_.find(cmd.lease);
  if (it == leases_.end()) {
    if (cmd.op == KvCommand::Op::kLeaseExpire) return r;  // revoked meanwhile: nothing to do
    return Refuse(StatusCode::kNotFound, Refusal::kUnknownLease,
                  "lease " + std::to_string(cmd.lease) + " does not exist (expired or revoked)");
  }
  Lease& l = it->second;
  if (cmd.op == KvCommand::Op::kLeaseKeepalive) {
    l.expires_at_ms = std::max(l.expires_at_ms, cmd.now_ms + l.ttl_ms);
    r.ok = true;
    r.id = cmd.lease;
    return r;
  }
  if (cmd.op == KvCommand::Op::kLeaseExpire && cmd.now_ms < l.expires_at_ms)
    return r;  // kept alive meanwhile
  // Revoke, or expire: the lease's keys go, all at one revision.
  std::set<std::string> keys = std::move(l.keys);
  leases_.erase(it);
  if (!keys.empty()) {
    ++revision_;
    for (const std::string& k : keys) {
      auto kit = data_.find(k);
      if (kit != data_.end()) kit->second.lease = 0;  // already detached
      DeleteKey(k);
    }
  }
  r.ok = true;
  r.id = cmd.lease;
  return r;
}

KvResult KvStateMachine::ExecuteJob(const KvCommand& cmd) {
  switch (cmd.op) {
    case KvCommand::Op::kJoin:
      return Join(cmd);
    case KvCommand::Op::kLeave:
    case KvCommand::Op::kHeartbeat:
    case KvCommand::Op::kFail:
      return ChangeMember(cmd);
    case KvCommand::Op::kCommitEpoch:
      return CommitEpoch(cmd);
    case KvCommand::Op::kProposeCheckpoint:
      return ProposeCheckpoint(cmd);
    case KvCommand::Op::kCommitCheckpoint:
      return CommitCheckpoint(cmd);
    default:
      return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand, "unknown command");
  }
}

KvResult KvStateMachine::Join(const KvCommand& cmd) {
  if (cmd.member.empty()) {
    return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand, "join: empty member id");
  }
  auto it = members_.find(cmd.member);
  if (it == members_.end() && members_.size() >= raft::limits::kMaxMembers) {
    // Forget the member that left or failed longest ago to make room.
    auto victim = members_.end();
    for (auto m = members_.begin(); m != members_.end(); ++m) {
      bool gone = m->second.state == MemberState::kLeft || m->second.state == MemberState::kFailed;
      if (gone && (victim == members_.end() ||
                   m->second.last_heartbeat_ms < victim->second.last_heartbeat_ms)) {
        victim = m;
      }
    }
    if (victim == members_.end()) {
      return Refuse(StatusCode::kUnavailable, Refusal::kLimitReached,
                    "join: the job has " + std::to_string(raft::limits::kMaxMembers) +
                        " members; none can be forgotten");
    }
    members_.erase(victim);
  }
  Member& m = members_[cmd.member];
  m.address = cmd.address;
  if (m.state != MemberState::kActive) m.state = MemberState::kJoining;
  m.last_heartbeat_ms = cmd.now_ms;
  KvResult r;
  r.ok = true;
  return r;
}

KvResult KvStateMachine::ChangeMember(const KvCommand& cmd) {
  auto it = members_.find(cmd.member);
  if (it == members_.end()) {
    return Refuse(StatusCode::kNotFound, Refusal::kUnknownMember,
                  "member '" + cmd.member + "' is not in the job; join first");
  }
  Member& m = it->second;
  if (cmd.op == KvCommand::Op::kHeartbeat) {
    if (m.state == MemberState::kLeft || m.state == MemberState::kFailed) {
      return Refuse(StatusCode::kFailedPrecondition, Refusal::kMustJoinAgain,
                    "member '" + cmd.member + "' is " + MemberStateName(m.state) + "; join again");
    }
    m.last_heartbeat_ms = std::max(m.last_heartbeat_ms, cmd.now_ms);
  } else {
    m.state = cmd.op == KvCommand::Op::kLeave ? MemberState::kLeft : MemberState::kFailed;
  }
  KvResult r;
  r.ok = true;
  return r;
}

KvResult KvStateMachine::CommitEpoch(const KvCommand& cmd) {
  if (cmd.members.empty()) {
    return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand,
                  "commit epoch: no members given");
  }
  std::set<std::string> seen;
  for (const std::string& id : cmd.members) {
    if (!seen.insert(id).second) {
      return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand,
                    "commit epoch: member '" + id + "' is listed twice");
    }
    auto it = members_.find(id);
    if (it == members_.end()) {
      return Refuse(StatusCode::kFailedPrecondition, Refusal::kUnknownMember,
                    "commit epoch: '" + id + "' is not a member; it must join first");
    }
    if (!coordinator::IsLive(it->second.state)) {
      return Refuse(StatusCode::kFailedPrecondition, Refusal::kMustJoinAgain,
                    "commit epoch: member '" + id + "' is " + MemberStateName(it->second.state) +
                        "; it must join again");
    }
  }
  for (auto& [id, m] : members_) {
    if (seen.count(id)) {
      m.state = MemberState::kActive;
    } else if (m.state == MemberState::kActive) {
      m.state = MemberState::kLeft;  // dropped from the job by the new epoch
    }
  }
  if (epoch_ > 0) epoch_history_[epoch_] = ranks_;
  while (epoch_history_.size() > raft::limits::kMaxEpochHistory) {
    epoch_history_.erase(epoch_history_.begin());
  }
  ++epoch_;
  ranks_ = cmd.members;
  // Checkpoints proposed in an earlier epoch can no longer commit.
  pending_.clear();
  KvResult r;
  r.ok = true;
  r.id = epoch_;
  return r;
}

KvResult KvStateMachine::ProposeCheckpoint(const KvCommand& cmd) {
  if (cmd.key.empty()) {
    return Refuse(StatusCode::kInvalidArgument, Refusal::kInvalidCommand, "checkpoint: empty path");
  }
  if (committed_ && cmd.step <= committed_->step) {
    return Refuse(StatusCode::kFailedPrecondition, Refusal::kCheckpointNotNewer,
                  "checkpoint at step " + std::to_string(cmd.step) +
                      " is not after the last committed one (step " +
                      std::to_string(committed_->step) + ")");
  }
  if (pending_.count(cmd.step) == 0 && pending_.size() >= raft::limits::kMaxPendingCheckpoints) {
    pending_.erase(pending_.begin());  // the oldest step gives way
  }
  pending_[cmd.step] = CheckpointManifest{epoch_, cmd.step, cmd.key, cmd.value};
  KvResult r;
  r.ok = true;
  return r;
}

KvResult KvStateMachine::CommitCheckpoint(const KvCommand& cmd) {
  auto it = pending_.find(cmd.step);
  if (it == pending_.end()) {
    return Refuse(StatusCode::kFailedPrecondition, Refusal::kNoPendingCheckpoint,
                  "no pending checkpoint at step " + std::to_string(cmd.step) + " in epoch " +
                      std::to_string(epoch_) + "; propose it first");
  }
  // Pending ones are all of this epoch (an epoch commit clears them).
  committed_ = it->second;
  pending_.erase(pending_.begin(), std::next(it));  // older steps are superseded
  KvResult r;
  r.ok = true;
  return r;
}

// ---- Reads ----------------------------------------------------------------------

std::optional<std::string> KvStateMachine::Get(const std::string& key) const {
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second.value;
}

const KvEntry* KvStateMachine::Find(const std::string& key) const {
  auto it = data_.find(key);
  return it == data_.end() ? nullptr : &it->second;
}

std::vector<KvEvent> KvStateMachine::Changes(const std::string& key, bool prefix,
                                             uint64_t after_revision, size_t max,
                                             bool* more) const {
  std::map<std::string, KvEvent> found;  // live keys and tombstones, by key
  auto matches = [&](const std::string& k) {
    return prefix ? k.compare(0, key.size(), key) == 0 : k == key;
  };
  for (auto it = data_.lower_bound(key); it != data_.end() && matches(it->first); ++it) {
    if (it->second.mod_revision > after_revision) {
      found[it->first] = KvEvent{it->first, false, it->second.value, it->second.mod_revision};
    }
  }
  for (auto it = tombstones_.rbegin(); it != tombstones_.rend() && it->first > after_revision;
       ++it) {
    if (matches(it->second) && data_.count(it->second) == 0 && found.count(it->second) == 0) {
      found[it->second] = KvEvent{it->second, true, "", it->first};
    }
  }
  std::vector<KvEvent> out;
  out.reserve(found.size());
  for (auto& [k, e] : found) out.push_back(std::move(e));
  *more = out.size() > max;
  if (*more) {
    // Keep the oldest changes, whole revisions only, so that watching again
    // after the highest mod_revision kept misses nothing. One revision with
    // more keys than `max` (a lease's keys) is kept whole.
    std::stable_sort(out.begin(), out.end(), [](const KvEvent& a, const KvEvent& b) {
      return a.mod_revision < b.mod_revision;
    });
    uint64_t cut = out[max].mod_revision;
    size_t n = max;
    while (n > 0 && out[n - 1].mod_revision == cut) --n;
    if (n == 0) {
      n = max;
      while (n < out.size() && out[n].mod_revision == cut) ++n;
    }
    *more = n < out.size();
    out.resize(n);
    std::sort(out.begin(), out.end(),
              [](const KvEvent& a, const KvEvent& b) { return a.key < b.key; });
  }
  return out;
}

std::vector<uint64_t> KvStateMachine::ExpiredLeases(uint64_t now_ms, size_t max) const {
  std::vector<uint64_t> out;
  for (const auto& [id, l] : leases_) {
    if (out.size() >= max) break;
    if (l.expires_at_ms <= now_ms) out.push_back(id);
  }
  return out;
}

// ---- Snapshots ------------------------------------------------------------------

std::string KvStateMachine::Serialize() const {
  std::string out;
  PutU64(&out, kSnapshotMagicV3);
  PutU64(&out, revision_);
  PutU64(&out, compacted_revision_);
  PutU64(&out, data_.size());
  for (const auto& [k, e] : data_) {
    PutBytes(&out, k);
    PutBytes(&out, e.value);
    PutU64(&out, e.create_revision);
    PutU64(&out, e.mod_revision);
    PutU64(&out, e.lease);
  }
  PutU64(&out, tombstones_.size());
  for (const auto& [rev, k] : tombstones_) {
    PutU64(&out, rev);
    PutBytes(&out, k);
  }
  PutU64(&out, next_lease_);
  PutU64(&out, leases_.size());
  for (const auto& [id, l] : leases_) {
    PutU64(&out, id);
    PutU64(&out, l.ttl_ms);
    PutU64(&out, l.expires_at_ms);
  }
  PutU64(&out, members_.size());
  for (const auto& [id, m] : members_) {
    PutBytes(&out, id);
    PutBytes(&out, m.address);
    PutU8(&out, static_cast<uint8_t>(m.state));
    PutU64(&out, m.last_heartbeat_ms);
  }
  PutU64(&out, epoch_);
  PutStrings(&out, ranks_);
  PutU64(&out, epoch_history_.size());
  for (const auto& [e, r] : epoch_history_) {
    PutU64(&out, e);
    PutStrings(&out, r);
  }
  PutU64(&out, pending_.size());
  for (const auto& [step, m] : pending_) PutManifest(&out, m);
  PutU8(&out, committed_ ? 1 : 0);
  if (committed_) PutManifest(&out, *committed_);
  PutU64(&out, sessions_.size());
  for (const auto& [id, s] : sessions_) {
    PutU64(&out, id);
    PutU64(&out, s.last_seq);
    PutU64(&out, s.last_index);
    PutResult(&out, s.last_result);
  }
  return out;
}

Status KvStateMachine::Restore(std::string_view data) {
  Decoder d(data);
  KvStateMachine s;
  uint64_t n = 0;
  bool ok = d.U64(&n);
  auto fail = [&] {
    return DataLoss("key-value snapshot does not decode (" + std::to_string(data.size()) +
                    " bytes)");
  };
  const bool v3 = n == kSnapshotMagicV3;
  if (ok && n != kSnapshotMagicV2 && !v3) {
    // The older format: keys and values, then put/cas sessions.
    for (uint64_t i = 0; ok && i < n; ++i) {
      std::string k, v;
      ok = d.Bytes(&k, raft::limits::kMaxKeyBytes) && d.Bytes(&v, raft::limits::kMaxValueBytes);
      if (ok) s.data_[std::move(k)].value = std::move(v);
    }
    ok = ok && d.U64(&n) && n <= raft::limits::kMaxClientSessions;
    for (uint64_t i = 0; ok && i < n; ++i) {
      uint64_t id = 0;
      Session ss;
      uint8_t rok = 0;
      ok = d.U64(&id) && d.U64(&ss.last_seq) && d.U64(&ss.last_index) && d.U8(&rok) &&
           GetOptional(d, &ss.last_result.previous);
      ss.last_result.ok = rok != 0;
      if (ok) s.sessions_.emplace(id, std::move(ss));
    }
    if (!ok || !d.done()) return fail();
    *this = std::move(s);
    return Status::Ok();
  }
  ok = ok && d.U64(&s.revision_) && d.U64(&s.compacted_revision_) && d.U64(&n);
  for (uint64_t i = 0; ok && i < n; ++i) {
    std::string k;
    KvEntry e;
    ok = d.Bytes(&k, raft::limits::kMaxKeyBytes) &&
         d.Bytes(&e.value, raft::limits::kMaxValueBytes) && d.U64(&e.create_revision) &&
         d.U64(&e.mod_revision) && d.U64(&e.lease);
    if (ok) s.data_.emplace(std::move(k), std::move(e));
  }
  ok = ok && d.U64(&n) && n <= raft::limits::kMaxTombstones;
  for (uint64_t i = 0; ok && i < n; ++i) {
    uint64_t rev = 0;
    std::string k;
    ok = d.U64(&rev) && d.Bytes(&k, raft::limits::kMaxKeyBytes);
    if (ok) s.tombstones_.emplace_back(rev, std::move(k));
  }
  ok = ok && d.U64(&s.next_lease_) && d.U64(&n) && n <= raft::limits::kMaxLeases;
  for (uint64_t i = 0; ok && i < n; ++i) {
    uint64_t id = 0;
    Lease l;
    ok = d.U64(&id) && d.U64(&l.ttl_ms) && d.U64(&l.expires_at_ms);
    if (ok) s.leases_.emplace(id, std::move(l));
  }
  // A lease's keys are derived from the keys' lease field.
  for (const auto& [k, e] : s.data_) {
    if (e.lease == 0) continue;
    auto it = s.leases_.find(e.lease);
    if (it == s.leases_.end()) return fail();
    it->second.keys.insert(k);
  }
  ok = ok && d.U64(&n) && n <= raft::limits::kMaxMembers;
  for (uint64_t i = 0; ok && i < n; ++i) {
    std::string id;
    Member m;
    uint8_t state = 0;
    ok = d.Bytes(&id, raft::limits::kMaxKeyBytes) &&
         d.Bytes(&m.address, raft::limits::kMaxKeyBytes) && d.U8(&state) &&
         state <= static_cast<uint8_t>(MemberState::kLeft) && d.U64(&m.last_heartbeat_ms);
    m.state = static_cast<MemberState>(state);
    if (ok) s.members_.emplace(std::move(id), std::move(m));
  }
  ok = ok && d.U64(&s.epoch_) && GetStrings(d, &s.ranks_, raft::limits::kMaxMembers) && d.U64(&n) &&
       n <= raft::limits::kMaxEpochHistory;
  for (uint64_t i = 0; ok && i < n; ++i) {
    uint64_t e = 0;
    std::vector<std::string> r;
    ok = d.U64(&e) && GetStrings(d, &r, raft::limits::kMaxMembers);
    if (ok) s.epoch_history_.emplace(e, std::move(r));
  }
  ok = ok && d.U64(&n) && n <= raft::limits::kMaxPendingCheckpoints;
  for (uint64_t i = 0; ok && i < n; ++i) {
    CheckpointManifest m;
    ok = GetManifest(d, &m);
    if (ok) s.pending_.emplace(m.step, std::move(m));
  }
  uint8_t has = 0;
  ok = ok && d.U8(&has) && has <= 1;
  if (ok && has) {
    CheckpointManifest m;
    ok = GetManifest(d, &m);
    s.committed_ = std::move(m);
  }
  ok = ok && d.U64(&n) && n <= raft::limits::kMaxClientSessions;
  for (uint64_t i = 0; ok && i < n; ++i) {
    uint64_t id = 0;
    Session ss;
    ok = d.U64(&id) && d.U64(&ss.last_seq) && d.U64(&ss.last_index) &&
         GetResult(d, &ss.last_result, v3);
    if (ok) s.sessions_.emplace(id, std::move(ss));
  }
  if (!ok || !d.done()) return fail();
  *this = std::move(s);
  return Status::Ok();
}

}  // namespace cohort::coordinator
