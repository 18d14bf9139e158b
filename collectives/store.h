#pragma once
// The rendezvous Store: a small key-value space the ranks of a group use to
// find each other before they can communicate (the way Gloo and NCCL leave
// rendezvous to the caller). The coordinator client will implement it for
// real jobs; here are an in-memory store (ranks as threads of one process)
// and a file store (ranks as processes on one host sharing a directory).
//
// Contract, for every implementation:
// - Thread-safe; one Store may be shared by many ranks.
// - Keys are at most kMaxStoreKeyBytes bytes, values at most
//   kMaxStoreValueBytes; both are arbitrary bytes. Set overwrites.
// - Waits (Get, Wait) are bounded by a timeout, at most kMaxStoreTimeout,
//   and return DeadlineExceeded naming the missing key when it passes.
// - Add treats the value as a decimal int64 counter (absent = 0), adds
//   atomically and returns the new value.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace cohort {

inline constexpr size_t kMaxStoreKeyBytes = 120;
inline constexpr size_t kMaxStoreValueBytes = size_t{1} << 20;
inline constexpr std::chrono::milliseconds kMaxStoreTimeout = std::chrono::hours(1);

class Store {
 public:
  virtual ~Store() = default;

  virtual Status Set(std::string_view key, std::string_view value) = 0;
  // Waits until `key` exists, up to `timeout`, and returns its value.
  virtual Result<std::string> Get(std::string_view key, std::chrono::milliseconds timeout) = 0;
  // Waits until every key exists, up to `timeout` in all.
  virtual Status Wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  virtual Result<int64_t> Add(std::string_view key, int64_t delta) = 0;
  // True when `key` exists now. Never waits.
  virtual Result<bool> Check(std::string_view key) = 0;
};

// Checks key/value/timeout limits; InvalidArgument on a breach.
Status CheckStoreArgs(std::string_view key, size_t value_bytes,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// For ranks that are threads of one process. Waits use a condition variable.
class InMemoryStore final : public Store {
 public:
  Status Set(std::string_view key, std::string_view value) override;
  Result<std::string> Get(std::string_view key, std::chrono::milliseconds timeout) override;
  Result<int64_t> Add(std::string_view key, int64_t delta) override;
  Result<bool> Check(std::string_view key) override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string, std::less<>> data_;  // guarded by mu_
};

// For processes on one host: one file per key in `dir` (created if missing),
// written to a temporary file and renamed into place, so a reader sees a
// whole value or none. Add takes an flock on `dir`/.lock. Waits poll with a
// backoff up to kFileStorePollMax. Nothing is fsynced: rendezvous state does
// not outlive the job. The directory is not removed by the store.
class FileStore final : public Store {
 public:
  static constexpr std::chrono::milliseconds kFileStorePollMax{5};
  static Result<std::unique_ptr<FileStore>> Open(const std::string& dir);

  Status Set(std::string_view key, std::string_view value) override;
  Result<std::string> Get(std::string_view key, std::chrono::milliseconds timeout) override;
  Result<int64_t> Add(std::string_view key, int64_t delta) override;
  Result<bool> Check(std::string_view key) override;

  const std::string& dir() const { return dir_; }

 private:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(std::string_view key) const;
  Status WriteAtomic(const std::string& path, std::string_view value);
  std::string dir_;
};

// Every key of `base` under "prefix/": lets one store serve many groups
// (a communicator and its splits). Shares ownership of `base`.
class PrefixStore final : public Store {
 public:
  PrefixStore(std::shared_ptr<Store> base, std::string prefix)
      : base_(std::move(base)), prefix_(std::move(prefix) + "/") {}
  Status Set(std::string_view key, std::string_view value) override {
    return base_->Set(prefix_ + std::string(key), value);
  }
  Result<std::string> Get(std::string_view key, std::chrono::milliseconds timeout) override {
    return base_->Get(prefix_ + std::string(key), timeout);
  }
  Result<int64_t> Add(std::string_view key, int64_t delta) override {
    return base_->Add(prefix_ + std::string(key), delta);
  }
  Result<bool> Check(std::string_view key) override {
    return base_->Check(prefix_ + std::string(key));
  }

 private:
  std::shared_ptr<Store> base_;
  std::string prefix_;
};

}  // namespace cohort
