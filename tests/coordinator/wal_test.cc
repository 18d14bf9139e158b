// Tests of the write-ahead log and snapshot files (coordinator/storage/wal.h),
// over the in-memory file system (with its crash model) and over POSIX.

#include "coordinator/storage/wal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "coordinator/raft/encoding.h"

namespace cohort::coordinator {
namespace {

using raft::ConfState;
using raft::Entry;
using raft::HardState;
using raft::InitialState;
using raft::LoadU32;
using raft::PutU32;
using raft::Rng;
using raft::Snapshot;

Entry E(uint64_t term, uint64_t index, std::string data = "") {
  Entry e;
  e.term = term;
  e.index = index;
  e.data = data.empty() ? "d" + std::to_string(index) : data;
  return e;
}

std::vector<Entry> Range(uint64_t term, uint64_t from, uint64_t to) {
  std::vector<Entry> v;
  for (uint64_t i = from; i <= to; ++i) v.push_back(E(term, i));
  return v;
}

Result<InitialState> Reload(FileSystem* fs, uint64_t segment_bytes = 1 << 20) {
  Wal w(fs, WalOptions{"/w", segment_bytes});
  return w.Load();
}

TEST(Wal, RoundTrip) {
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w"});
    ASSERT_TRUE(w.Load().ok());
    ASSERT_TRUE(w.Save(HardState{2, 3, 4}, Range(1, 1, 3), std::nullopt, true).ok());
    ASSERT_TRUE(
        w.Save(HardState{2, 3, 5}, {E(2, 4), E(2, 5, std::string(5000, 'z'))}, std::nullopt, true)
            .ok());
  }
  Result<InitialState> st = Reload(&fs);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->hard_state, (HardState{2, 3, 5}));
  ASSERT_EQ(st->entries.size(), 5u);
  EXPECT_EQ(st->entries[4], E(2, 5, std::string(5000, 'z')));
  EXPECT_EQ(st->entries[0], E(1, 1));
}

TEST(Wal, LaterEntriesReplaceSuffix) {
  MemFileSystem fs;
  Wal w(&fs, WalOptions{"/w"});
  ASSERT_TRUE(w.Load().ok());
  ASSERT_TRUE(w.Save(HardState{1, 0, 0}, Range(1, 1, 5), std::nullopt, true).ok());
  ASSERT_TRUE(w.Save(HardState{2, 0, 0}, Range(2, 3, 4), std::nullopt, true).ok());
  Result<InitialState> st = Reload(&fs);
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->entries.size(), 4u);
  EXPECT_EQ(st->entries[2].term, 2u);
  EXPECT_EQ(st->entries[3].index, 4u);
}

TEST(Wal, GroupCommitIsOneSyncPerSave) {
  MemFileSystem fs;
  Wal w(&fs, WalOptions{"/w"});
  ASSERT_TRUE(w.Load().ok());
  uint64_t before = fs.sync_count();
  ASSERT_TRUE(w.Save(HardState{1, 1, 0}, Range(1, 1, 500), std::nullopt, true).ok());
  EXPECT_EQ(fs.sync_count() - before, 1u);
  // A commit-only change need not be synced.
  ASSERT_TRUE(w.Save(HardState{1, 1, 400}, {}, std::nullopt, false).ok());
  EXPECT_EQ(fs.sync_count() - before, 1u);
  EXPECT_GT(fs.UnsyncedBytes("/w/wal-0000000000000001.log"), 0u);
}

TEST(Wal, TornTailIsTruncated) {
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w"});
    ASSERT_TRUE(w.Load().ok());
    ASSERT_TRUE(w.Save(HardState{1, 1, 2}, Range(1, 1, 3), std::nullopt, true).ok());
  }
  std::string* f = fs.MutableContents("/w/wal-0000000000000001.log");
  ASSERT_NE(f, nullptr);
  size_t good = f->size();
  // Append a record cut in the middle of its payload, as a crash would.
  std::string rec;
  PutU32(&rec, 100);
  PutU32(&rec, 12345);
  rec += std::string(40, 'q');
  *f += rec;
  Wal w(&fs, WalOptions{"/w"});
  Result<InitialState> st = w.Load();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->entries.size(), 3u);
  EXPECT_EQ(st->hard_state, (HardState{1, 1, 2}));
  EXPECT_EQ(w.stats().torn_bytes_truncated, rec.size());
  EXPECT_EQ(fs.MutableContents("/w/wal-0000000000000001.log")->size(), good);
  // Appends after recovery land after the good records.
  ASSERT_TRUE(w.Save(std::nullopt, {E(1, 4)}, std::nullopt, true).ok());
  Result<InitialState> again = Reload(&fs);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->entries.size(), 4u);
}

TEST(Wal, PartialHeaderZeroedTailAndBadLastCrcAreTorn) {
  for (int kind = 0; kind < 3; ++kind) {
    MemFileSystem fs;
    {
      Wal w(&fs, WalOptions{"/w"});
      ASSERT_TRUE(w.Load().ok());
      ASSERT_TRUE(w.Save(HardState{1, 1, 1}, Range(1, 1, 2), std::nullopt, true).ok());
      ASSERT_TRUE(w.Save(std::nullopt, {E(1, 3)}, std::nullopt, true).ok());
    }
    std::string* f = fs.MutableContents("/w/wal-0000000000000001.log");
    if (kind == 0) *f += std::string("\x05\x00\x00", 3);  // partial header
    if (kind == 1) *f += std::string(64, '\0');           // zeroed, allocated tail
    if (kind == 2) (*f)[f->size() - 1] ^= 0x40;           // last record's payload hit
    Result<InitialState> st = Reload(&fs);
    ASSERT_TRUE(st.ok()) << "kind " << kind << ": " << st.status().ToString();
    EXPECT_EQ(st->entries.size(), kind == 2 ? 2u : 3u) << "kind " << kind;
  }
}

TEST(Wal, MidFileCorruptionIsRefusedWithFileAndOffset) {
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w"});
    ASSERT_TRUE(w.Load().ok());
    ASSERT_TRUE(w.Save(HardState{1, 1, 0}, Range(1, 1, 5), std::nullopt, true).ok());
  }
  std::string* f = fs.MutableContents("/w/wal-0000000000000001.log");
  // The second record starts after the first: 8-byte header + payload.
  uint32_t first_len = LoadU32(f->data());
  size_t second = 8 + first_len;
  (*f)[second + 8 + 3] ^= 0x01;  // a bit flip inside the second record's payload
  Result<InitialState> st = Reload(&fs);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(st.status().message().find("/w/wal-0000000000000001.log"), std::string::npos)
      << st.status().ToString();
  EXPECT_NE(st.status().message().find("byte offset " + std::to_string(second)), std::string::npos)
      << st.status().ToString();
  EXPECT_NE(st.status().message().find("CRC32C"), std::string::npos);
}

TEST(Wal, TornTailInOlderSegmentIsRefused) {
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w", 64});
    ASSERT_TRUE(w.Load().ok());
    for (uint64_t i = 1; i <= 6; ++i)
      ASSERT_TRUE(w.Save(HardState{1, 1, 0}, {E(1, i)}, std::nullopt, true).ok());
    ASSERT_GE(w.SegmentNames().size(), 3u);
  }
  *fs.MutableContents("/w/wal-0000000000000001.log") += std::string("\x07\x00", 2);
  Result<InitialState> st = Reload(&fs, 64);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("wal-0000000000000001.log at byte offset"),
            std::string::npos)
      << st.status().ToString();
}

TEST(Wal, UnsyncedWritesMayBeLostOnCrashButRecoveryWorks) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    MemFileSystem fs;
    {
      Wal w(&fs, WalOptions{"/w"});
      ASSERT_TRUE(w.Load().ok());
      ASSERT_TRUE(w.Save(HardState{1, 1, 2}, Range(1, 1, 4), std::nullopt, true).ok());
      ASSERT_TRUE(w.Save(HardState{2, 2, 3}, Range(2, 5, 9), std::nullopt, false).ok());
    }
    Rng rng(seed);
    fs.Crash(rng, 0.3);
    Result<InitialState> st = Reload(&fs);
    ASSERT_TRUE(st.ok()) << "seed " << seed << ": " << st.status().ToString();
    // The synced batch survives; the unsynced one is all, some, or none.
    ASSERT_GE(st->entries.size(), 4u);
    EXPECT_LE(st->entries.size(), 9u);
    for (size_t i = 0; i < st->entries.size(); ++i) EXPECT_EQ(st->entries[i].index, i + 1);
  }
}

TEST(Wal, SegmentsRollAndCoveredOnesAreRemovedAfterSnapshot) {
  MemFileSystem fs;
  Wal w(&fs, WalOptions{"/w", 200});
  ASSERT_TRUE(w.Load().ok());
  for (uint64_t i = 1; i <= 40; ++i)
    ASSERT_TRUE(w.Save(HardState{1, 1, i}, {E(1, i)}, std::nullopt, true).ok());
  size_t before = w.SegmentNames().size();
  ASSERT_GT(before, 5u);
  Snapshot s;
  s.meta = {30, 1, ConfState{{1, 2, 3}}};
  s.data = "state@30";
  ASSERT_TRUE(w.SaveSnapshot(s).ok());
  EXPECT_LT(w.SegmentNames().size(), before);
  EXPECT_GT(w.stats().segments_removed, 0u);
  Result<InitialState> st = Reload(&fs, 200);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->snapshot, s);
  ASSERT_EQ(st->entries.size(), 10u);
  EXPECT_EQ(st->entries.front().index, 31u);
  EXPECT_EQ(st->hard_state, (HardState{1, 1, 40}));
}

TEST(Wal, SnapshotFromLeaderResetsLog) {
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w"});
    ASSERT_TRUE(w.Load().ok());
    ASSERT_TRUE(w.Save(HardState{2, 0, 3}, Range(2, 1, 8), std::nullopt, true).ok());
    Snapshot s;
    s.meta = {6, 3, ConfState{{1, 2}}};  // term 3 at 6: our entries 4..8 diverge
    s.data = "leader state";
    ASSERT_TRUE(w.Save(HardState{3, 0, 6}, {}, s, true).ok());
    ASSERT_TRUE(w.Save(std::nullopt, {E(3, 7)}, std::nullopt, true).ok());
  }
  Result<InitialState> st = Reload(&fs);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->snapshot.meta.index, 6u);
  EXPECT_EQ(st->snapshot.data, "leader state");
  ASSERT_EQ(st->entries.size(), 1u);
  EXPECT_EQ(st->entries[0], E(3, 7));
}

TEST(Wal, LostResetRecordIsRepairedOnLoad) {
  // A crash after the snapshot file was written but before the WAL's reset
  // record reached the disk: the divergent log is discarded and a reset is
  // written, so later appends follow the snapshot (found by raft_sim).
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w"});
    ASSERT_TRUE(w.Load().ok());
    ASSERT_TRUE(w.Save(HardState{2, 0, 3}, Range(2, 1, 5), std::nullopt, true).ok());
    size_t synced = fs.MutableContents("/w/wal-0000000000000001.log")->size();
    Snapshot s;
    s.meta = {9, 3, ConfState{{1, 2}}};
    ASSERT_TRUE(w.Save(HardState{3, 0, 9}, {}, s, false).ok());
    fs.MutableContents("/w/wal-0000000000000001.log")
        ->resize(synced);  // the reset record never landed
  }
  {
    Wal w(&fs, WalOptions{"/w"});
    Result<InitialState> st = w.Load();
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(st->snapshot.meta.index, 9u);
    EXPECT_TRUE(st->entries.empty());
    ASSERT_TRUE(w.Save(HardState{3, 0, 10}, {E(3, 10)}, std::nullopt, true).ok());
  }
  Result<InitialState> st = Reload(&fs);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->entries.size(), 1u);
  EXPECT_EQ(st->entries[0].index, 10u);
}

TEST(Wal, CorruptSnapshotFileIsRefused) {
  MemFileSystem fs;
  {
    Wal w(&fs, WalOptions{"/w"});
    ASSERT_TRUE(w.Load().ok());
    Snapshot s;
    s.meta = {0, 0, ConfState{{1, 2, 3}}};
    ASSERT_TRUE(w.SaveSnapshot(s).ok());
  }
  std::string* f = fs.MutableContents("/w/snap-0000000000000000.snap");
  ASSERT_NE(f, nullptr);
  (*f)[f->size() - 1] ^= 1;
  Result<InitialState> st = Reload(&fs);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(st.status().message().find("snap-0000000000000000.snap"), std::string::npos);
}

TEST(Wal, PosixRoundTripWithCorruptionRefused) {
  std::string dir =
      std::filesystem::temp_directory_path() / ("cohort_wal_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    Wal w(PosixFileSystem(), WalOptions{dir, 256});
    ASSERT_TRUE(w.Load().ok());
    for (uint64_t i = 1; i <= 20; ++i) {
      ASSERT_TRUE(w.Save(HardState{1, 2, i - 1}, {E(1, i)}, std::nullopt, true).ok());
    }
    Snapshot s;
    s.meta = {10, 1, ConfState{{1, 2, 3}}};
    s.data = "snap";
    ASSERT_TRUE(w.SaveSnapshot(s).ok());
  }
  {
    Wal w(PosixFileSystem(), WalOptions{dir, 256});
    Result<InitialState> st = w.Load();
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(st->snapshot.meta.index, 10u);
    ASSERT_EQ(st->entries.size(), 10u);
    EXPECT_EQ(st->hard_state, (HardState{1, 2, 19}));
    ASSERT_FALSE(w.SegmentNames().empty());
  }
  // Corrupt the first surviving segment's first record.
  std::vector<std::string> segs;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".log") segs.push_back(e.path().string());
  }
  std::sort(segs.begin(), segs.end());
  ASSERT_GE(segs.size(), 2u);
  {
    std::FILE* fp = std::fopen(segs[0].c_str(), "r+b");
    ASSERT_NE(fp, nullptr);
    std::fseek(fp, 10, SEEK_SET);
    std::fputc(0x5a, fp);
    std::fclose(fp);
  }
  Wal w(PosixFileSystem(), WalOptions{dir, 256});
  Result<InitialState> st = w.Load();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find(segs[0] + " at byte offset 0"), std::string::npos)
      << st.status().ToString();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cohort::coordinator
