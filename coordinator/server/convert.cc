#include "coordinator/server/convert.h"

#include <map>
#include <string>

namespace cohort::coordinator {
namespace {

constexpr int kMaxMessageType = static_cast<int>(raft::MessageType::kReadIndexResp);

void EntryToProto(const raft::Entry& e, pb::Entry* out) {
  out->set_term(e.term);
  out->set_index(e.index);
  out->set_type(e.type == raft::EntryType::kConfChange ? pb::ENTRY_CONF_CHANGE : pb::ENTRY_NORMAL);
  out->set_data(e.data);
}

}  // namespace

void ToProto(const raft::Snapshot& s, pb::Snapshot* out) {
  pb::SnapshotMeta* meta = out->mutable_meta();
  meta->set_index(s.meta.index);
  meta->set_term(s.meta.term);
  for (raft::NodeId v : s.meta.conf.voters) meta->mutable_conf()->add_voters(v);
  out->set_data(s.data);
}

raft::Snapshot FromProto(const pb::Snapshot& s) {
  raft::Snapshot out;
  out.meta.index = s.meta().index();
  out.meta.term = s.meta().term();
  out.meta.conf.voters.assign(s.meta().conf().voters().begin(), s.meta().conf().voters().end());
  out.data = s.data();
  return out;
}

void ToProto(const raft::Message& m, pb::Message* out) {
  // The enums are declared in the same order (checked in FromProto's range test).
  out->set_type(static_cast<pb::MessageType>(static_cast<int>(m.type)));
  out->set_from(m.from);
  out->set_to(m.to);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_index(m.index);
  for (const raft::Entry& e : m.entries) EntryToProto(e, out->add_entries());
  out->set_commit(m.commit);
  out->set_reject(m.reject);
  out->set_reject_hint(m.reject_hint);
  out->set_context(m.context);
  if (m.snapshot) ToProto(*m.snapshot, out->mutable_snapshot());
}

Result<raft::Message> FromProto(const pb::Message& m) {
  static_assert(static_cast<int>(raft::MessageType::kReadIndexResp) == pb::MSG_READ_INDEX_RESP);
  static_assert(static_cast<int>(raft::MessageType::kPreVote) == pb::MSG_PRE_VOTE);
  static_assert(static_cast<int>(raft::MessageType::kSnap) == pb::MSG_SNAP);
  if (m.type() < 0 || m.type() > kMaxMessageType) {
    return InvalidArgument("raft message of unknown type " + std::to_string(m.type()) +
                           " from node " + std::to_string(m.from()));
  }
  raft::Message out;
  out.type = static_cast<raft::MessageType>(m.type());
  out.from = m.from();
  out.to = m.to();
  out.term = m.term();
  out.log_term = m.log_term();
  out.index = m.index();
  out.entries.reserve(m.entries_size());
  for (const pb::Entry& e : m.entries()) {
    raft::Entry re;
    re.term = e.term();
    re.index = e.index();
    if (e.type() == pb::ENTRY_NORMAL) {
      re.type = raft::EntryType::kNormal;
    } else if (e.type() == pb::ENTRY_CONF_CHANGE) {
      re.type = raft::EntryType::kConfChange;
    } else {
      return InvalidArgument("raft entry of unknown type " + std::to_string(e.type()) +
                             " at index " + std::to_string(e.index()));
    }
    re.data = e.data();
    out.entries.push_back(std::move(re));
  }
  out.commit = m.commit();
  out.reject = m.reject();
  out.reject_hint = m.reject_hint();
  out.context = m.context();
  if (m.has_snapshot()) out.snapshot = FromProto(m.snapshot());
  return out;
}

void FillJob(const KvStateMachine& kv, pb::JobResponse* out) {
  out->set_epoch(kv.epoch());
  std::map<std::string, int> rank;
  for (size_t r = 0; r < kv.ranks().size(); ++r) rank[kv.ranks()[r]] = static_cast<int>(r);
  for (const auto& [id, m] : kv.members()) {
    pb::MemberInfo* mi = out->add_members();
    mi->set_id(id);
    mi->set_address(m.address);
    mi->set_state(
        static_cast<pb::MemberState>(m.state));  // same numbers (coordinator/kv/job_types.h)
    mi->set_last_heartbeat_ms(m.last_heartbeat_ms);
    auto it = rank.find(id);
    mi->set_rank(it == rank.end() ? -1 : it->second);
  }
  for (const std::string& id : kv.ranks()) out->add_ranks(id);
  auto fill = [](const CheckpointManifest& m, pb::CheckpointInfo* c) {
    c->set_epoch(m.epoch);
    c->set_step(m.step);
    c->set_path(m.path);
    c->set_checksum(m.checksum);
  };
  if (kv.last_checkpoint()) {
    out->set_has_checkpoint(true);
    fill(*kv.last_checkpoint(), out->mutable_last_checkpoint());
  }
  for (const auto& [step, m] : kv.pending_checkpoints()) fill(m, out->add_pending());
  out->set_revision(kv.revision());
}

}  // namespace cohort::coordinator
