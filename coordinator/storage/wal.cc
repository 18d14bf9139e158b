#include "coordinator/storage/wal.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "coordinator/raft/encoding.h"
#include "core/crc32c.h"

namespace cohort::coordinator {

// What the WAL stores is the Raft core's (coordinator/raft/types.h, encoding.h).
using raft::Decoder;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::InitialState;
using raft::LoadU32;
using raft::NodeId;
using raft::PutBytes;
using raft::PutU32;
using raft::PutU64;
using raft::PutU8;
using raft::Snapshot;
using raft::SnapshotMeta;

namespace {

constexpr uint8_t kRecEntry = 1;
constexpr uint8_t kRecHardState = 2;
constexpr uint8_t kRecReset = 3;
constexpr size_t kHeaderBytes = 8;
constexpr char kSnapMagic[8] = {'C', 'S', 'N', 'A', 'P', '0', '0', '1'};

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

bool ParseHexName(const std::string& name, const char* prefix, const char* suffix, uint64_t* v) {
  std::string p(prefix), s(suffix);
  if (name.size() != p.size() + 16 + s.size()) return false;
  if (name.compare(0, p.size(), p) != 0 || name.compare(name.size() - s.size(), s.size(), s) != 0)
    return false;
  uint64_t x = 0;
  for (size_t i = p.size(); i < p.size() + 16; ++i) {
    char c = name[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    x = (x << 4) | static_cast<uint64_t>(d);
  }
  *v = x;
  return true;
}

void AppendRecord(std::string* out, const std::string& payload) {
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, Crc32c(payload));
  out->append(payload);
}

std::string EntryPayload(const Entry& e) {
  std::string p;
  PutU8(&p, kRecEntry);
  PutU64(&p, e.term);
  PutU64(&p, e.index);
  PutU8(&p, static_cast<uint8_t>(e.type));
  PutBytes(&p, e.data);
  return p;
}

std::string HardStatePayload(const HardState& hs) {
  std::string p;
  PutU8(&p, kRecHardState);
  PutU64(&p, hs.term);
  PutU64(&p, hs.vote);
  PutU64(&p, hs.commit);
  return p;
}

std::string ResetPayload(uint64_t index, uint64_t term) {
  std::string p;
  PutU8(&p, kRecReset);
  PutU64(&p, index);
  PutU64(&p, term);
  return p;
}

bool AllZero(const std::string& s, size_t from) {
  return std::all_of(s.begin() + static_cast<ptrdiff_t>(from), s.end(),
                     [](char c) { return c == 0; });
}

std::string At(const std::string& path, uint64_t offset) {
  return path + " at byte offset " + std::to_string(offset);
}

}  // namespace

std::string EncodeSnapshotFile(const Snapshot& s) {
  std::string body;
  PutU64(&body, s.meta.index);
  PutU64(&body, s.meta.term);
  PutU32(&body, static_cast<uint32_t>(s.meta.conf.voters.size()));
  for (NodeId v : s.meta.conf.voters) PutU64(&body, v);
  PutBytes(&body, s.data);
  std::string out(kSnapMagic, sizeof(kSnapMagic));
  PutU32(&out, Crc32c(body));
  out += body;
  return out;
}

Result<Snapshot> DecodeSnapshotFile(const std::string& contents, const std::string& path) {
  if (contents.size() < sizeof(kSnapMagic) + 4 ||
      contents.compare(0, sizeof(kSnapMagic), std::string(kSnapMagic, sizeof(kSnapMagic))) != 0) {
    return DataLoss("snapshot " + path +
                    " has no valid header (byte offset 0); restore it from a peer or remove it");
  }
  std::string_view body(contents.data() + sizeof(kSnapMagic) + 4,
                        contents.size() - sizeof(kSnapMagic) - 4);
  if (Crc32c(body.data(), body.size()) != LoadU32(contents.data() + sizeof(kSnapMagic))) {
    return DataLoss("snapshot " + path +
                    " fails its CRC32C check (byte offset 12); the file is corrupted");
  }
  Decoder d(body);
  Snapshot s;
  uint32_t n = 0;
  bool ok =
      d.U64(&s.meta.index) && d.U64(&s.meta.term) && d.U32(&n) && n <= raft::limits::kMaxVoters;
  for (uint32_t i = 0; ok && i < n; ++i) {
    NodeId v = 0;
    ok = d.U64(&v);
    s.meta.conf.voters.push_back(v);
  }
  ok = ok && d.Bytes(&s.data, raft::limits::kMaxSnapshotBytes) && d.done();
  if (!ok) return DataLoss("snapshot " + path + " does not decode (byte offset 12)");
  return s;
}

Wal::Wal(FileSystem* fs, WalOptions options) : fs_(fs), options_(std::move(options)) {}

std::string Wal::SegmentPath(uint64_t seq) const {
  return options_.dir + "/wal-" + Hex16(seq) + ".log";
}

std::vector<std::string> Wal::SegmentNames() const {
  std::vector<std::string> out;
  for (const Segment& s : segments_) out.push_back("wal-" + Hex16(s.seq) + ".log");
  return out;
}

namespace {

// The snapshot indexes and segment sequence numbers named in the directory,
// each sorted ascending.
struct WalFiles {
  std::vector<uint64_t> snap_indexes;
  std::vector<uint64_t> seqs;
};

WalFiles FindWalFiles(const std::vector<std::string>& names) {
  WalFiles files;
  for (const std::string& n : names) {
    uint64_t v = 0;
    if (ParseHexName(n, "snap-", ".snap", &v)) files.snap_indexes.push_back(v);
    if (ParseHexName(n, "wal-", ".log", &v)) files.seqs.push_back(v);
  }
  std::sort(files.snap_indexes.begin(), files.snap_indexes.end());
  std::sort(files.seqs.begin(), files.seqs.end());
  return files;
}

// The framing of the record at `off`: its payload length, and what is wrong
// with it (`why` empty: nothing); `torn` when that may be a torn write.
struct Framing {
  uint32_t len = 0;
  bool torn = false;
  std::string why;
};

Framing CheckFraming(const std::string& data, uint64_t off) {
  Framing f;
  size_t remaining = data.size() - off;
  if (remaining < kHeaderBytes) {
    f.torn = true;
    f.why = "partial record header";
    return f;
  }
  f.len = LoadU32(data.data() + off);
  uint32_t crc = LoadU32(data.data() + off + 4);
  if (AllZero(data, off)) {
    f.torn = true;
    f.why = "zeroed tail";
  } else if (f.len > raft::limits::kMaxWalRecordBytes) {
    f.why = "record length " + std::to_string(f.len) + " exceeds the limit";
  } else if (remaining - kHeaderBytes < f.len) {
    f.torn = true;
    f.why = "partial record";
  } else if (Crc32c(data.data() + off + kHeaderBytes, f.len) != crc) {
    f.torn = remaining - kHeaderBytes == f.len;  // only the record that ends the file may be torn
    f.why = "CRC32C mismatch";
  }
  return f;
}

}  // namespace

// What replaying the segments has recovered so far.
struct Wal::Replay {
  std::vector<Entry> log;  // contiguous, log[0].index == base + 1
  uint64_t base = 0;
  uint64_t base_term = 0;
  bool base_term_known = true;
  HardState hs;
};

Result<InitialState> Wal::Load() {
  COHORT_CHECK(!loaded_) << "Wal::Load called twice";
  COHORT_RETURN_IF_ERROR(fs_->MakeDirs(options_.dir));
  COHORT_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  const WalFiles files = FindWalFiles(names);

  InitialState st;
  if (!files.snap_indexes.empty()) {
    std::string path = options_.dir + "/snap-" + Hex16(files.snap_indexes.back()) + ".snap";
    COHORT_ASSIGN_OR_RETURN(std::string contents, fs_->ReadFile(path));
    COHORT_ASSIGN_OR_RETURN(st.snapshot, DecodeSnapshotFile(contents, path));
  }

  Replay r;
  stats_.torn_bytes_truncated = 0;
  for (size_t si = 0; si < files.seqs.size(); ++si) {
    COHORT_RETURN_IF_ERROR(
        ReplaySegment(files.seqs[si], /*last_segment=*/si + 1 == files.seqs.size(), &r));
  }

  const SnapshotMeta& sm = st.snapshot.meta;
  COHORT_ASSIGN_OR_RETURN(bool need_reset, ReconcileWithSnapshot(sm, &r));
  st.entries = std::move(r.log);
  st.hard_state = r.hs;
  hard_state_ = r.hs;
  COHORT_RETURN_IF_ERROR(OpenLastSegment(sm, need_reset));
  loaded_ = true;
  return st;
}

Status Wal::ReplaySegment(uint64_t seq, bool last_segment, Replay* r) {
  std::string path = SegmentPath(seq);
  COHORT_ASSIGN_OR_RETURN(std::string data, fs_->ReadFile(path));
  Segment seg;
  seg.seq = seq;
  uint64_t off = 0;
  while (off < data.size()) {
    const Framing f = CheckFraming(data, off);
    if (f.torn && last_segment) {
      COHORT_RETURN_IF_ERROR(fs_->Truncate(path, off));
      stats_.torn_bytes_truncated += data.size() - off;
      data.resize(off);
      break;
    }
    if (!f.why.empty()) {
      return DataLoss(
          "WAL corrupted: " + f.why + " in " + At(path, off) +
          "; the node cannot recover on its own: restore its data directory from a peer "
          "(remove it and rejoin)");
    }
    std::string_view payload(data.data() + off + kHeaderBytes, f.len);
    COHORT_RETURN_IF_ERROR(ReplayRecord(payload, path, off, r, &seg));
    off += kHeaderBytes + f.len;
    ++stats_.records;
  }
  seg.bytes = data.size();
  segments_.push_back(seg);
  return Status::Ok();
}

Status Wal::ReplayRecord(std::string_view payload, const std::string& path, uint64_t off, Replay* r,
                         Segment* seg) {
  Decoder d(payload);
  uint8_t type = 0;
  bool ok = d.U8(&type);
  if (ok && type == kRecEntry) {
    Entry e;
    uint8_t et = 0;
    ok = d.U64(&e.term) && d.U64(&e.index) && d.U8(&et) && et <= 1 &&
         d.Bytes(&e.data, raft::limits::kMaxWalRecordBytes) && d.done();
    e.type = static_cast<EntryType>(et);
    if (ok) {
      if (r->log.empty() && r->base == 0 && e.index > 1) {
        r->base = e.index - 1;  // older segments were removed after a snapshot
        r->base_term_known = false;
      }
      if (!r->base_term_known && e.index <= r->base) {
        // Overwrites an entry in a removed segment: those entries are all
        // covered by the snapshot (checked in ReconcileWithSnapshot), so
        // start over here.
        r->log.clear();
        r->base = e.index - 1;
      }
      if (e.index <= r->base || e.index > r->base + r->log.size() + 1) {
        return DataLoss("WAL entry index " + std::to_string(e.index) +
                        " does not follow the log (" + std::to_string(r->base + 1) + ".." +
                        std::to_string(r->base + r->log.size()) + ") in " + At(path, off));
      }
      r->log.resize(e.index - r->base - 1);
      seg->max_index = std::max(seg->max_index, e.index);
      r->log.push_back(std::move(e));
    }
  } else if (ok && type == kRecHardState) {
    ok = d.U64(&r->hs.term) && d.U64(&r->hs.vote) && d.U64(&r->hs.commit) && d.done();
  } else if (ok && type == kRecReset) {
    uint64_t idx = 0, term = 0;
    ok = d.U64(&idx) && d.U64(&term) && d.done();
    if (ok) {
      r->log.clear();
      r->base = idx;
      r->base_term = term;
      r->base_term_known = true;
      seg->max_index = std::max(seg->max_index, idx);
    }
  } else {
    ok = false;
  }
  if (!ok) return DataLoss("WAL record does not decode (checksum is valid) in " + At(path, off));
  return Status::Ok();
}

Result<bool> Wal::ReconcileWithSnapshot(const SnapshotMeta& sm, Replay* r) const {
  // When the recovered log does not simply continue the WAL's (a snapshot
  // from a leader whose reset record was lost in a crash), a reset record is
  // written (OpenLastSegment) so that later appends follow the snapshot.
  std::vector<Entry>& log = r->log;
  const uint64_t base = r->base;
  bool need_reset = false;
  if (!log.empty()) {
    uint64_t first = base + 1, last = base + log.size();
    if (sm.index >= last) {
      need_reset = !(sm.index == last && log.back().term == sm.term);
      log.clear();
    } else if (sm.index >= first) {
      if (log[sm.index - first].term == sm.term) {
        log.erase(log.begin(), log.begin() + static_cast<ptrdiff_t>(sm.index - base));
      } else {
        log.clear();  // a snapshot from a leader replaced a divergent log
        need_reset = true;
      }
    } else if (sm.index == base) {
      if (r->base_term_known && r->base_term != sm.term) {
        log.clear();
        need_reset = true;
      }
    } else {
      return DataLoss("WAL in " + options_.dir + " starts at index " + std::to_string(first) +
                      " but the newest snapshot ends at " + std::to_string(sm.index) +
                      ": entries are missing");
    }
  } else {
    need_reset = base != sm.index || (r->base_term_known && r->base_term != sm.term);
  }
  HardState& hs = r->hs;
  if (hs.commit < sm.index) hs.commit = sm.index;
  if (hs.commit > sm.index + log.size()) {
    return DataLoss("WAL in " + options_.dir + ": commit index " + std::to_string(hs.commit) +
                    " is beyond the recovered log (" + std::to_string(sm.index + log.size()) + ")");
  }
  return need_reset;
}

Status Wal::OpenLastSegment(const SnapshotMeta& sm, bool need_reset) {
  if (segments_.empty()) {
    COHORT_RETURN_IF_ERROR(StartSegment(1));
  } else {
    COHORT_ASSIGN_OR_RETURN(current_, fs_->OpenForAppend(SegmentPath(segments_.back().seq)));
  }
  if (need_reset) {
    std::string buf;
    AppendRecord(&buf, ResetPayload(sm.index, sm.term));
    COHORT_RETURN_IF_ERROR(current_->Append(buf));
    COHORT_RETURN_IF_ERROR(current_->Sync());
    ++stats_.syncs;
    segments_.back().bytes += buf.size();
    segments_.back().max_index = std::max(segments_.back().max_index, sm.index);
  }
  return Status::Ok();
}

Status Wal::StartSegment(uint64_t seq) {
  COHORT_ASSIGN_OR_RETURN(current_, fs_->OpenForAppend(SegmentPath(seq)));
  Segment s;
  s.seq = seq;
  segments_.push_back(s);
  return Status::Ok();
}

Status Wal::WriteSnapshotFile(const Snapshot& s) {
  std::string path = options_.dir + "/snap-" + Hex16(s.meta.index) + ".snap";
  COHORT_RETURN_IF_ERROR(fs_->WriteFileAtomic(path, EncodeSnapshotFile(s)));
  // Keep the newest two.
  COHORT_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  std::vector<uint64_t> idx;
  for (const std::string& n : names) {
    uint64_t v = 0;
    if (ParseHexName(n, "snap-", ".snap", &v)) idx.push_back(v);
  }
  std::sort(idx.begin(), idx.end());
  for (size_t i = 0; i + 2 < idx.size(); ++i) {
    COHORT_RETURN_IF_ERROR(fs_->Remove(options_.dir + "/snap-" + Hex16(idx[i]) + ".snap"));
  }
  return Status::Ok();
}

Status Wal::RemoveCoveredSegments(uint64_t snapshot_index) {
  // A prefix of segments whose entries all precede the snapshot; never the
  // open one. The next segment starts with the hard state, so none is lost.
  while (segments_.size() > 1 && segments_.front().max_index < snapshot_index) {
    COHORT_RETURN_IF_ERROR(fs_->Remove(SegmentPath(segments_.front().seq)));
    segments_.erase(segments_.begin());
    ++stats_.segments_removed;
  }
  return Status::Ok();
}

Status Wal::Save(const std::optional<HardState>& hard_state, const std::vector<Entry>& entries,
                 const std::optional<Snapshot>& snapshot, bool sync) {
  COHORT_CHECK(loaded_) << "Wal::Save before Load";
  if (!hard_state && entries.empty() && !snapshot) return Status::Ok();
  std::string buf;
  if (segments_.back().bytes >= options_.segment_bytes) {
    // Roll over. The old segment is synced first: only the last segment may
    // ever hold a torn tail.
    COHORT_RETURN_IF_ERROR(current_->Sync());
    ++stats_.syncs;
    COHORT_RETURN_IF_ERROR(StartSegment(segments_.back().seq + 1));
    AppendRecord(&buf, HardStatePayload(hard_state_));
  }
  Segment& seg = segments_.back();
  if (snapshot) {
    COHORT_RETURN_IF_ERROR(WriteSnapshotFile(*snapshot));
    AppendRecord(&buf, ResetPayload(snapshot->meta.index, snapshot->meta.term));
    seg.max_index = std::max(seg.max_index, snapshot->meta.index);
  }
  for (const Entry& e : entries) {
    std::string p = EntryPayload(e);
    if (p.size() > raft::limits::kMaxWalRecordBytes) {
      return InvalidArgument("entry " + std::to_string(e.index) + " of " +
                             std::to_string(e.data.size()) + " bytes exceeds the WAL record limit");
    }
    AppendRecord(&buf, p);
    seg.max_index = std::max(seg.max_index, e.index);
  }
  if (hard_state) {
    AppendRecord(&buf, HardStatePayload(*hard_state));
    hard_state_ = *hard_state;
  }
  COHORT_RETURN_IF_ERROR(current_->Append(buf));
  seg.bytes += buf.size();
  if (sync) {
    COHORT_RETURN_IF_ERROR(current_->Sync());
    ++stats_.syncs;
  }
  if (snapshot) COHORT_RETURN_IF_ERROR(RemoveCoveredSegments(snapshot->meta.index));
  return Status::Ok();
}

Status Wal::SaveSnapshot(const Snapshot& snapshot) {
  COHORT_CHECK(loaded_) << "Wal::SaveSnapshot before Load";
  COHORT_RETURN_IF_ERROR(WriteSnapshotFile(snapshot));
  return RemoveCoveredSegments(snapshot.meta.index);
}

}  // namespace cohort::coordinator
