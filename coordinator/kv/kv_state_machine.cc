#include "coordinator/kv/kv_state_machine.h"

#include "coordinator/raft/encoding.h"
#include "coordinator/raft/limits.h"

namespace cohort::raft {
namespace {

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
  if (!d.Bytes(&s, limits::kMaxValueBytes)) return false;
  *v = std::move(s);
  return true;
}

}  // namespace

std::string KvCommand::Encode() const {
  std::string out;
  PutU8(&out, static_cast<uint8_t>(op));
  PutU64(&out, client_id);
  PutU64(&out, seq);
  PutBytes(&out, key);
  PutBytes(&out, value);
  PutOptional(&out, expected);
  return out;
}

Result<KvCommand> KvCommand::Decode(std::string_view data) {
  Decoder d(data);
  KvCommand c;
  uint8_t op = 0;
  bool ok = d.U8(&op) && op <= 1 && d.U64(&c.client_id) && d.U64(&c.seq) &&
            d.Bytes(&c.key, limits::kMaxKeyBytes) && d.Bytes(&c.value, limits::kMaxValueBytes) &&
            GetOptional(d, &c.expected) && d.done();
  if (!ok) return InvalidArgument("not a key-value command (" + std::to_string(data.size()) + " bytes)");
  c.op = static_cast<KvCommand::Op>(op);
  return c;
}

KvResult KvStateMachine::Apply(uint64_t index, const KvCommand& cmd) {
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
  KvResult r;
  auto it = data_.find(cmd.key);
  if (it != data_.end()) r.previous = it->second;
  if (cmd.op == KvCommand::Op::kPut) {
    r.ok = true;
  } else {
    r.ok = r.previous == cmd.expected;
  }
  if (r.ok) data_[cmd.key] = cmd.value;
  Session& s = sessions_[cmd.client_id];
  s.last_seq = cmd.seq;
  s.last_index = index;
  s.last_result = r;
  if (sessions_.size() > limits::kMaxClientSessions) {
    auto oldest = sessions_.begin();
    for (auto i = sessions_.begin(); i != sessions_.end(); ++i) {
      if (i->second.last_index < oldest->second.last_index) oldest = i;
    }
    sessions_.erase(oldest);
  }
  return r;
}

std::optional<std::string> KvStateMachine::Get(const std::string& key) const {
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

std::string KvStateMachine::Serialize() const {
  std::string out;
  PutU64(&out, data_.size());
  for (const auto& [k, v] : data_) {
    PutBytes(&out, k);
    PutBytes(&out, v);
  }
  PutU64(&out, sessions_.size());
  for (const auto& [id, s] : sessions_) {
    PutU64(&out, id);
    PutU64(&out, s.last_seq);
    PutU64(&out, s.last_index);
    PutU8(&out, s.last_result.ok ? 1 : 0);
    PutOptional(&out, s.last_result.previous);
  }
  return out;
}

Status KvStateMachine::Restore(std::string_view data) {
  Decoder d(data);
  std::map<std::string, std::string> kv;
  std::map<uint64_t, Session> sessions;
  uint64_t n = 0;
  bool ok = d.U64(&n);
  for (uint64_t i = 0; ok && i < n; ++i) {
    std::string k, v;
    ok = d.Bytes(&k, limits::kMaxKeyBytes) && d.Bytes(&v, limits::kMaxValueBytes);
    if (ok) kv.emplace(std::move(k), std::move(v));
  }
  ok = ok && d.U64(&n) && n <= limits::kMaxClientSessions;
  for (uint64_t i = 0; ok && i < n; ++i) {
    uint64_t id = 0;
    Session s;
    uint8_t rok = 0;
    ok = d.U64(&id) && d.U64(&s.last_seq) && d.U64(&s.last_index) && d.U8(&rok) &&
         GetOptional(d, &s.last_result.previous);
    s.last_result.ok = rok != 0;
    if (ok) sessions.emplace(id, std::move(s));
  }
  if (!ok || !d.done()) return DataLoss("key-value snapshot does not decode (" + std::to_string(data.size()) + " bytes)");
  data_ = std::move(kv);
  sessions_ = std::move(sessions);
  return Status::Ok();
}

}  // namespace cohort::raft
