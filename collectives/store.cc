#include "collectives/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <thread>

#include "core/file_util.h"  // MakeDirs

namespace cohort {
namespace {

using Clock = std::chrono::steady_clock;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

Result<int64_t> ParseCounter(std::string_view key, std::string_view text) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgument("store key '" + std::string(key) +
                           "' holds a non-counter value; Add needs a decimal int64");
  }
  return v;
}

// Reads a whole file; NotFound exactly when open() says ENOENT (a check
// after a failed open would race with the rename that publishes the key).
Result<std::string> ReadWhole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFound("no file " + path);
    return IoError(Errno("FileStore: open " + path));
  }
  std::string out;
  char buf[64 << 10];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = IoError(Errno("FileStore: read " + path));
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxStoreValueBytes) {
      ::close(fd);
      return DataLoss("FileStore: " + path + " is larger than kMaxStoreValueBytes");
    }
  }
  ::close(fd);
  return out;
}

}  // namespace

Status CheckStoreArgs(std::string_view key, size_t value_bytes, std::chrono::milliseconds timeout) {
  if (key.empty() || key.size() > kMaxStoreKeyBytes) {
    return InvalidArgument("store key of " + std::to_string(key.size()) + " bytes; keys are 1.." +
                           std::to_string(kMaxStoreKeyBytes) + " bytes");
  }
  if (value_bytes > kMaxStoreValueBytes) {
    return InvalidArgument("store value of " + std::to_string(value_bytes) +
                           " bytes exceeds kMaxStoreValueBytes");
  }
  if (timeout.count() < 0 || timeout > kMaxStoreTimeout) {
    return InvalidArgument("store timeout " + std::to_string(timeout.count()) +
                           " ms outside [0, kMaxStoreTimeout]");
  }
  return Status::Ok();
}

Status Store::Wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (const std::string& key : keys) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    Result<std::string> r = Get(key, left);
    if (!r.ok()) return r.status();
  }
  return Status::Ok();
}

// ---- InMemoryStore -----------------------------------------------------------

Status InMemoryStore::Set(std::string_view key, std::string_view value) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, value.size()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    data_.insert_or_assign(std::string(key), std::string(value));
  }
  cv_.notify_all();
  return Status::Ok();
}

Result<std::string> InMemoryStore::Get(std::string_view key, std::chrono::milliseconds timeout) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0, timeout));
  std::unique_lock<std::mutex> lock(mu_);
  auto it = data_.end();
  const bool found = cv_.wait_for(lock, timeout, [&] {
    it = data_.find(key);
    return it != data_.end();
  });
  if (!found) {
    return DeadlineExceeded("store key '" + std::string(key) + "' not set within " +
                            std::to_string(timeout.count()) + " ms (is every rank started?)");
  }
  return it->second;
}

Result<int64_t> InMemoryStore::Add(std::string_view key, int64_t delta) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0));
  int64_t v = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = data_.find(key);
    if (it != data_.end()) {
      COHORT_ASSIGN_OR_RETURN(v, ParseCounter(key, it->second));
    }
    v += delta;
    data_.insert_or_assign(std::string(key), std::to_string(v));
  }
  cv_.notify_all();
  return v;
}

Result<bool> InMemoryStore::Check(std::string_view key) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0));
  std::lock_guard<std::mutex> lock(mu_);
  return data_.find(key) != data_.end();
}

// ---- FileStore ----------------------------------------------------------------

Result<std::unique_ptr<FileStore>> FileStore::Open(const std::string& dir) {
  if (dir.empty()) return InvalidArgument("FileStore: empty directory name");
  COHORT_RETURN_IF_ERROR(MakeDirs(dir));
  return std::unique_ptr<FileStore>(new FileStore(dir));
}

std::string FileStore::PathOf(std::string_view key) const {
  // Hex, so any key bytes make a valid file name (<= 240 characters).
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = dir_ + "/k-";
  for (unsigned char c : key) {
    name.push_back(kHex[c >> 4]);
    name.push_back(kHex[c & 15]);
  }
  return name;
}

Status FileStore::WriteAtomic(const std::string& path, std::string_view value) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = dir_ + "/.tmp-" + std::to_string(::getpid()) + "-" +
                          std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())) +
                          "-" + std::to_string(counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(Errno("FileStore: open " + tmp));
  size_t done = 0;
  while (done < value.size()) {
    ssize_t n = ::write(fd, value.data() + done, value.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = IoError(Errno("FileStore: write " + tmp));
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = IoError(Errno("FileStore: rename to " + path));
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::Ok();
}

Status FileStore::Set(std::string_view key, std::string_view value) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, value.size()));
  return WriteAtomic(PathOf(key), value);
}

Result<std::string> FileStore::Get(std::string_view key, std::chrono::milliseconds timeout) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0, timeout));
  const std::string path = PathOf(key);
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    Result<std::string> r = ReadWhole(path);
    if (r.ok()) return r;
    if (r.status().code() != StatusCode::kNotFound) return r.status();
    if (Clock::now() >= deadline) {
      return DeadlineExceeded("store key '" + std::string(key) + "' not set in " + dir_ +
                              " within " + std::to_string(timeout.count()) +
                              " ms (is every rank started?)");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, kFileStorePollMax);
  }
}

Result<int64_t> FileStore::Add(std::string_view key, int64_t delta) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0));
  const std::string lock_path = dir_ + "/.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(Errno("FileStore: open " + lock_path));
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      Status s = IoError(Errno("FileStore: flock " + lock_path));
      ::close(fd);
      return s;
    }
  }
  const std::string path = PathOf(key);
  int64_t v = 0;
  Status status;
  Result<std::string> old = ReadWhole(path);
  if (old.ok()) {
    Result<int64_t> parsed = ParseCounter(key, *old);
    if (parsed.ok()) {
      v = *parsed;
    } else {
      status = parsed.status();
    }
  } else if (old.status().code() != StatusCode::kNotFound) {
    status = old.status();
  }
  if (status.ok()) {
    v += delta;
    status = WriteAtomic(path, std::to_string(v));
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
  if (!status.ok()) return status;
  return v;
}

Result<bool> FileStore::Check(std::string_view key) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0));
  struct stat st;
  return ::stat(PathOf(key).c_str(), &st) == 0;
}

}  // namespace cohort
