// The auto backend's calibration cache (collectives/auto/auto_cache.h): the
// file format (round trip, checksum, key, rows that do not fit), and
// AutoCommunicator over gloo and shm with ranks as threads: the first start
// measures and writes the table, the second reads the same table from the
// file, a damaged or foreign file is measured again and rewritten, and
// `recalibrate` measures even with a valid file.
#include "collectives/auto/auto_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "collectives/gloo/gloo_communicator.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store.h"
#include "core/file_util.h"

namespace cohort {
namespace {

namespace fs = std::filesystem;

AutoTable SmallTable() {
  AutoTable t;
  for (int op = 0; op < kAutoOps; ++op) {
    for (int reg = 0; reg < 2; ++reg) {
      t[op][reg].push_back({8, {1.5, 0.5}, 1});
      t[op][reg].push_back({64, {2.0, 3.0}, 0});
    }
  }
  return t;
}

bool SameTable(const AutoTable& a, const AutoTable& b) {
  for (int op = 0; op < kAutoOps; ++op) {
    for (int reg = 0; reg < 2; ++reg) {
      const auto &x = a[op][reg], &y = b[op][reg];
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i].bytes != y[i].bytes || x[i].time_us != y[i].time_us || x[i].winner != y[i].winner)
          return false;
      }
    }
  }
  return true;
}

TEST(AutoCacheFormat, RoundTrip) {
  const std::string text = EncodeAutoTable("k1", SmallTable());
  auto t = DecodeAutoTable(text, "k1", 2);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(SameTable(*t, SmallTable()));
}

TEST(AutoCacheFormat, RefusesWhatItCannotTrust) {
  const std::string text = EncodeAutoTable("k1", SmallTable());
  EXPECT_EQ(DecodeAutoTable(text, "k2", 2).status().code(), StatusCode::kFailedPrecondition);
  std::string flipped = text;
  flipped[flipped.find("1.5")] = '7';  // a time changed: the checksum no longer matches
  EXPECT_EQ(DecodeAutoTable(flipped, "k1", 2).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeAutoTable(text.substr(0, text.size() / 2), "k1", 2).status().code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(DecodeAutoTable("", "k1", 2).status().code(), StatusCode::kDataLoss);
  // Winner 1 does not exist with one member; two times do not fit one member.
  EXPECT_EQ(DecodeAutoTable(text, "k1", 1).status().code(), StatusCode::kDataLoss);
  AutoTable missing = SmallTable();
  missing[2][1].clear();
  EXPECT_EQ(DecodeAutoTable(EncodeAutoTable("k1", missing), "k1", 2).status().code(),
            StatusCode::kDataLoss);
}

TEST(AutoCacheFormat, KeyNamesWhatTheTableDependsOn) {
  AutoOptions o;
  const std::string base = AutoCacheKey({"mpi", "shm"}, {1, 1}, o, "b");
  EXPECT_NE(base, AutoCacheKey({"shm", "mpi"}, {1, 1}, o, "b"));
  EXPECT_NE(base, AutoCacheKey({"mpi", "shm"}, {1, 2}, o, "b"));
  EXPECT_NE(base, AutoCacheKey({"mpi", "shm"}, {1, 1, 1}, o, "b"));
  EXPECT_NE(base, AutoCacheKey({"mpi", "shm"}, {1, 1}, o, "c"));
  AutoOptions other = o;
  other.max_calibration_bytes *= 2;
  EXPECT_NE(base, AutoCacheKey({"mpi", "shm"}, {1, 1}, other, "b"));
  other = o;
  other.recalibrate = true;  // not part of what was measured
  other.cache_dir = "/elsewhere";
  EXPECT_EQ(base, AutoCacheKey({"mpi", "shm"}, {1, 1}, other, "b"));
  EXPECT_NE(AutoCachePath("/d", base),
            AutoCachePath("/d", AutoCacheKey({"mpi", "shm"}, {1, 2}, o, "b")));
}

struct Start {
  bool from_cache = false;
  std::string path;
  AutoTable table;
};

// Starts auto over gloo and shm on `n` threads with this cache directory.
std::vector<Start> StartAuto(int n, const std::string& dir, bool recalibrate) {
  auto store = std::make_shared<InMemoryStore>();
  std::vector<Start> out(static_cast<size_t>(n));
  std::vector<Status> status(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      GlooOptions go;
      go.prefix = "auto-gloo";
      auto gloo = GlooCommunicator::Create(store, r, n, go);
      ShmOptions so;
      so.op_timeout = std::chrono::seconds(60);
      so.bootstrap_timeout = std::chrono::seconds(60);
      auto shm = ShmCommunicator::Create(store, r, n, so);
      if (!gloo.ok() || !shm.ok()) {
        status[r] = gloo.ok() ? shm.status() : gloo.status();
        return;
      }
      std::vector<AutoCommunicator::Member> members;
      Communicator* g = gloo->get();
      Communicator* s = shm->get();
      members.push_back({"gloo", g, std::move(*gloo)});
      members.push_back({"shm", s, std::move(*shm)});
      AutoOptions o;
      o.max_calibration_bytes = 4 << 10;
      o.max_allreduce_calibration_bytes = 4 << 10;
      o.iterations_small = 1;
      o.iterations_large = 1;
      o.cache_dir = dir;
      o.recalibrate = recalibrate;
      auto c = AutoCommunicator::Create(std::move(members), o);
      status[r] = c.status();
      if (c.ok()) out[r] = {(*c)->from_cache(), (*c)->cache_path(), (*c)->table()};
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r)
    EXPECT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r].ToString();
  return out;
}

class AutoCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        (fs::temp_directory_path() / ("cohort-auto-cache-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(AutoCacheTest, SecondStartReadsTheTableTheFirstMeasured) {
  const auto first = StartAuto(3, dir_ + "/made-on-demand", false);
  ASSERT_EQ(first.size(), 3u);
  for (const Start& s : first) EXPECT_FALSE(s.from_cache);
  ASSERT_TRUE(fs::exists(first[0].path)) << first[0].path;
  for (const Start& s : first) EXPECT_TRUE(SameTable(s.table, first[0].table));

  const auto second = StartAuto(3, dir_ + "/made-on-demand", false);
  for (const Start& s : second) {
    EXPECT_TRUE(s.from_cache);
    EXPECT_TRUE(SameTable(s.table, first[0].table));  // every rank: rank 0's file, bitwise
  }
}

TEST_F(AutoCacheTest, DamagedOrForeignFilesAreMeasuredAgainAndRewritten) {
  const auto first = StartAuto(2, dir_, false);
  const std::string path = first[0].path;
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());

  // A torn file: measured again, then the rewritten file is read.
  ASSERT_TRUE(WriteFileAtomic(path, text->substr(0, text->size() / 3)).ok());
  for (const Start& s : StartAuto(2, dir_, false)) EXPECT_FALSE(s.from_cache);
  for (const Start& s : StartAuto(2, dir_, false)) EXPECT_TRUE(s.from_cache);

  // A valid file of another key put in its place (copied from elsewhere).
  ASSERT_TRUE(WriteFileAtomic(path, EncodeAutoTable("another build", first[0].table)).ok());
  for (const Start& s : StartAuto(2, dir_, false)) EXPECT_FALSE(s.from_cache);

  // recalibrate: measured even though the file is valid.
  for (const Start& s : StartAuto(2, dir_, true)) EXPECT_FALSE(s.from_cache);
  for (const Start& s : StartAuto(2, dir_, false)) EXPECT_TRUE(s.from_cache);
}

TEST_F(AutoCacheTest, NoDirectoryMeansNoCache) {
  for (const Start& s : StartAuto(2, "", false)) {
    EXPECT_FALSE(s.from_cache);
    EXPECT_TRUE(s.path.empty());
  }
}

}  // namespace
}  // namespace cohort
