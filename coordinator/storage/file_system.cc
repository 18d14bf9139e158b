#include "coordinator/storage/file_system.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/file_util.h"

namespace cohort::coordinator {
namespace {

std::string ErrnoText() { return std::strerror(errno); }

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("open directory " + dir + ": " + ErrnoText());
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return IoError("fsync directory " + dir + ": " + ErrnoText());
  return Status::Ok();
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override { ::close(fd_); }
  Status Append(std::string_view data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return IoError("write " + path_ + ": " + ErrnoText());
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  Status Sync() override {
    if (::fdatasync(fd_) != 0) return IoError("fdatasync " + path_ + ": " + ErrnoText());
    return Status::Ok();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixFs final : public FileSystem {
 public:
  Status MakeDirs(const std::string& dir) override { return cohort::MakeDirs(dir); }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      names.push_back(e.path().filename().string());
    }
    if (ec) return IoError("list directory " + dir + ": " + ec.message());
    std::sort(names.begin(), names.end());
    return names;
  }
  Result<std::string> ReadFile(const std::string& path) override { return cohort::ReadFile(path); }
  Status WriteFileAtomic(const std::string& path, std::string_view data) override {
    return cohort::WriteFileAtomic(path, data);
  }
  Result<std::unique_ptr<WritableFile>> OpenForAppend(const std::string& path) override {
    struct stat st;
    bool existed = ::stat(path.c_str(), &st) == 0;
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return IoError("open " + path + " for append: " + ErrnoText());
    if (!existed) {
      Status s = FsyncDir(DirOf(path));
      if (!s.ok()) {
        ::close(fd);
        return s;
      }
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }
  Status Truncate(const std::string& path, uint64_t size) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return IoError("open " + path + " to truncate: " + ErrnoText());
    int rc = ::ftruncate(fd, static_cast<off_t>(size));
    if (rc == 0) rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) return IoError("truncate " + path + ": " + ErrnoText());
    return Status::Ok();
  }
  Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return IoError("remove " + path + ": " + ErrnoText());
    return FsyncDir(DirOf(path));
  }
};

}  // namespace

FileSystem* PosixFileSystem() {
  static PosixFs fs;
  return &fs;
}

// ---- MemFileSystem ---------------------------------------------------------

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(MemFileSystem* fs, std::string path) : fs_(fs), path_(std::move(path)) {}
  Status Append(std::string_view data) override {
    auto it = fs_->files_.find(path_);
    if (it == fs_->files_.end()) return IoError("append to removed file " + path_);
    it->second.data.append(data.data(), data.size());
    return Status::Ok();
  }
  Status Sync() override {
    auto it = fs_->files_.find(path_);
    if (it == fs_->files_.end()) return IoError("sync of removed file " + path_);
    it->second.synced = it->second.data.size();
    ++fs_->sync_count_;
    return Status::Ok();
  }

 private:
  MemFileSystem* fs_;
  std::string path_;
};

Status MemFileSystem::MakeDirs(const std::string& dir) {
  if (std::find(dirs_.begin(), dirs_.end(), dir) == dirs_.end()) dirs_.push_back(dir);
  return Status::Ok();
}

Result<std::vector<std::string>> MemFileSystem::ListDir(const std::string& dir) {
  if (std::find(dirs_.begin(), dirs_.end(), dir) == dirs_.end())
    return NotFound("no directory " + dir);
  std::vector<std::string> names;
  std::string prefix = dir + "/";
  for (const auto& [path, f] : files_) {
    if (path.compare(0, prefix.size(), prefix) == 0 &&
        path.find('/', prefix.size()) == std::string::npos) {
      names.push_back(path.substr(prefix.size()));
    }
  }
  return names;  // std::map keeps them sorted
}

Result<std::string> MemFileSystem::ReadFile(const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound("file not found: " + path);
  return it->second.data;
}

Status MemFileSystem::WriteFileAtomic(const std::string& path, std::string_view data) {
  File& f = files_[path];
  f.data.assign(data.data(), data.size());
  f.synced = f.data.size();
  ++sync_count_;
  return Status::Ok();
}

Result<std::unique_ptr<WritableFile>> MemFileSystem::OpenForAppend(const std::string& path) {
  files_.try_emplace(path);
  return std::unique_ptr<WritableFile>(new MemWritableFile(this, path));
}

Status MemFileSystem::Truncate(const std::string& path, uint64_t size) {
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound("truncate: no file " + path);
  if (size < it->second.data.size()) it->second.data.resize(size);
  it->second.synced = std::min<uint64_t>(it->second.synced, size);
  it->second.synced = it->second.data.size();
  return Status::Ok();
}

Status MemFileSystem::Remove(const std::string& path) {
  if (files_.erase(path) == 0) return NotFound("remove: no file " + path);
  return Status::Ok();
}

int MemFileSystem::Crash(raft::Rng& rng, double zero_prob) {
  int damaged = 0;
  for (auto& [path, f] : files_) {
    uint64_t unsynced = f.data.size() - f.synced;
    if (unsynced == 0) continue;
    uint64_t keep = rng.Uniform(unsynced + 1);
    if (keep > 0 && rng.Chance(zero_prob)) {
      std::fill(f.data.begin() + static_cast<ptrdiff_t>(f.synced),
                f.data.begin() + static_cast<ptrdiff_t>(f.synced + keep), '\0');
    }
    f.data.resize(f.synced + keep);
    f.synced = f.data.size();
    ++damaged;
  }
  return damaged;
}

uint64_t MemFileSystem::UnsyncedBytes(const std::string& path) const {
  auto it = files_.find(path);
  return it == files_.end() ? 0 : it->second.data.size() - it->second.synced;
}

std::string* MemFileSystem::MutableContents(const std::string& path) {
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second.data;
}

}  // namespace cohort::coordinator
