#pragma once
// The file system the WAL writes through (CONTRIBUTING.md, "Decisions apart
// from I/O"), with a POSIX implementation and an in-memory twin for tests and
// the simulator. The twin
// models what a crash does to a real disk: bytes appended since the last
// Sync() of a file are lost, partly kept (a torn write) or kept as zeros
// (space allocated, data never written). Whole-file atomic writes, file
// creation, truncation and removal are durable when they return, as the POSIX
// implementation makes them (it fsyncs the directory).
//
// Thread safety: PosixFileSystem is thread-safe; MemFileSystem and the files
// it opens are not (the simulator is single-threaded).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/raft/rand.h"
#include "core/status.h"

namespace cohort::coordinator {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  // Makes every appended byte durable (fdatasync).
  virtual Status Sync() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual Status MakeDirs(const std::string& dir) = 0;
  // File names (not paths) in `dir`, sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  virtual Status WriteFileAtomic(const std::string& path, std::string_view data) = 0;
  // Opens `path` for appending, creating it (durably) when missing.
  virtual Result<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path) = 0;
  virtual Status Truncate(const std::string& path, uint64_t size) = 0;
  virtual Status Remove(const std::string& path) = 0;
};

// The real thing; paths are ordinary POSIX paths.
FileSystem* PosixFileSystem();

class MemFileSystem final : public FileSystem {
 public:
  Status MakeDirs(const std::string& dir) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Result<std::string> ReadFile(const std::string& path) override;
  Status WriteFileAtomic(const std::string& path, std::string_view data) override;
  Result<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path) override;
  Status Truncate(const std::string& path, uint64_t size) override;
  Status Remove(const std::string& path) override;

  // A power failure: each file keeps its synced bytes plus a random prefix of
  // the unsynced ones (none, some, or all); with probability `zero_prob` the
  // kept unsynced bytes read back as zeros. Open WritableFiles must not be
  // used afterwards. Returns the number of files that lost or tore bytes.
  int Crash(raft::Rng& rng, double zero_prob);
  // Bytes of `path` appended but not yet synced.
  uint64_t UnsyncedBytes(const std::string& path) const;
  uint64_t sync_count() const { return sync_count_; }
  // Test hook: direct access to a file's bytes (e.g. to corrupt one).
  std::string* MutableContents(const std::string& path);

 private:
  friend class MemWritableFile;
  struct File {
    std::string data;
    uint64_t synced = 0;
  };
  std::map<std::string, File> files_;
  std::vector<std::string> dirs_;
  uint64_t sync_count_ = 0;
};

}  // namespace cohort::coordinator
