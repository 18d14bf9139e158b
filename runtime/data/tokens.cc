#include "runtime/data/tokens.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <set>

#include "core/file_util.h"
#include "runtime/rng.h"

namespace cohort {

static_assert(std::endian::native == std::endian::little,
              "token files are little-endian and are read and written in the host's byte order");

namespace fs = std::filesystem;

namespace {

constexpr int64_t kProgressBytes = int64_t{64} << 20;

std::string ErrnoText() { return std::strerror(errno); }

// One token file mapped read-only; base is null when nothing is mapped.
struct Mapping {
  std::string path;
  void* base = nullptr;
  size_t length = 0;
  const uint16_t* tokens = nullptr;  // base + kTokenHeaderBytes
  int64_t count = 0;
};

void Unmap(Mapping& m) {
  if (m.base != nullptr) ::munmap(m.base, m.length);
  m.base = nullptr;
}

// Maps `path` and checks its header against its size.
Result<Mapping> MapTokenFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open token file " + path + ": " + ErrnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = IoError("stat token file " + path + ": " + ErrnoText());
    ::close(fd);
    return s;
  }
  const int64_t size = st.st_size;
  if (size < kTokenHeaderBytes) {
    ::close(fd);
    return DataLoss("token file " + path + " is shorter than its " +
                    std::to_string(kTokenHeaderBytes) + "-byte header (" + std::to_string(size) +
                    " bytes): truncated, or not an llm.c token file");
  }
  Mapping m;
  m.path = path;
  m.length = static_cast<size_t>(size);
  m.base = ::mmap(nullptr, m.length, PROT_READ, MAP_SHARED, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);
  if (m.base == MAP_FAILED) {
    m.base = nullptr;
    return IoError("mmap token file " + path + ": " + std::strerror(mmap_errno));
  }
  int32_t header[3];
  std::memcpy(header, m.base, sizeof(header));
  Status bad;
  const int64_t n = header[2];
  if (header[0] != kTokenFileMagic) {
    bad = DataLoss("token file " + path + " has magic " + std::to_string(header[0]) + ", not " +
                   std::to_string(kTokenFileMagic) + ": not an llm.c token file");
  } else if (header[1] != kTokenFileVersion) {
    bad = Unimplemented("token file " + path + " has version " + std::to_string(header[1]) +
                        "; only version 1 (uint16 tokens) is supported");
  } else if (n < 0) {
    bad = DataLoss("token file " + path + " has a negative token count " + std::to_string(n) +
                   " in its header");
  } else if (size != kTokenHeaderBytes + 2 * n) {
    const int64_t want = kTokenHeaderBytes + 2 * n;
    bad = DataLoss("token file " + path + (size < want ? " is truncated" : " has trailing bytes") +
                   ": its header says " + std::to_string(n) + " tokens (" + std::to_string(want) +
                   " bytes) but it has " + std::to_string(size) + " bytes");
  }
  if (!bad.ok()) {
    Unmap(m);
    return bad;
  }
  m.tokens =
      reinterpret_cast<const uint16_t*>(static_cast<const char*>(m.base) + kTokenHeaderBytes);
  m.count = n;
  return m;
}

// The file's header and `n` zero tokens.
std::string TokenFileSkeleton(int64_t n) {
  std::string out(static_cast<size_t>(kTokenHeaderBytes + 2 * n), '\0');
  const int32_t header[3] = {kTokenFileMagic, kTokenFileVersion, static_cast<int32_t>(n)};
  std::memcpy(out.data(), header, sizeof(header));
  return out;
}

// Byte offset of the first byte that does not belong to well-formed UTF-8
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or -1.
int64_t FirstInvalidUtf8(std::string_view s) {
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return static_cast<int64_t>(i);
    }
    if (n - i < len) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return static_cast<int64_t>(i);
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return static_cast<int64_t>(i);
    i += len;
  }
  return -1;
}

// Why `contents` is binary, or "" when it is text.
std::string BinaryReason(std::string_view contents) {
  const size_t nul = contents.find('\0');
  if (nul != std::string_view::npos) return "a NUL byte at offset " + std::to_string(nul);
  const int64_t bad = FirstInvalidUtf8(contents);
  if (bad >= 0) return "not valid UTF-8 at byte offset " + std::to_string(bad);
  return "";
}

std::string MiB(int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

std::string ShardName(const std::string& name, TokenSplit split, int index) {
  char num[16];
  std::snprintf(num, sizeof(num), "%06d", index);
  return name + "_" + std::string(TokenSplitName(split)) + "_" + num + ".bin";
}

struct Candidate {
  std::string path;
  bool explicit_input;  // named on the command line, not found in a directory
};

Status ValidateOptions(const TokenizeOptions& opt) {
  if (opt.inputs.empty())
    return InvalidArgument("no input: give at least one text file or directory");
  if (opt.out_dir.empty()) return InvalidArgument("no output directory given");
  if (opt.shards < 1) {
    return InvalidArgument("the number of training shards must be at least 1, not " +
                           std::to_string(opt.shards));
  }
  if (!(opt.val_fraction >= 0 && opt.val_fraction < 1)) {
    char v[32];
    std::snprintf(v, sizeof(v), "%g", opt.val_fraction);
    return InvalidArgument(std::string("the validation fraction must be in [0, 1), not ") + v);
  }
  if (opt.name.empty() || opt.name.find('/') != std::string::npos ||
      opt.name.find('\0') != std::string::npos) {
    return InvalidArgument("the file name prefix '" + opt.name +
                           "' must be non-empty and hold no '/'");
  }
  if (opt.name.find("_train") != std::string::npos || opt.name.find("_val") != std::string::npos) {
    return InvalidArgument("the file name prefix '" + opt.name +
                           "' must not contain '_train' or '_val' (they mark a file's split)");
  }
  return Status::Ok();
}

// Every file the inputs name, in order; a directory's regular files sorted.
Result<std::vector<Candidate>> ListInputs(const std::vector<std::string>& inputs,
                                          TokenizeReport* report) {
  std::vector<Candidate> out;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);  // follows a symlink named explicitly
    if (!fs::exists(st)) return NotFound("input not found: " + input);
    if (fs::is_regular_file(st)) {
      out.push_back({input, true});
      continue;
    }
    if (!fs::is_directory(st)) {
      return InvalidArgument("input " + input + " is neither a regular file nor a directory");
    }
    std::vector<std::string> files;
    fs::directory_iterator it(input, ec);
    if (ec) return IoError("list input directory " + input + ": " + ec.message());
    for (const fs::directory_entry& e : it) {
      const fs::file_status own = e.symlink_status(ec);  // a symlink is not followed
      if (!ec && fs::is_regular_file(own)) {
        files.push_back(e.path().string());
      } else {
        ++report->entries_skipped;
      }
    }
    std::sort(files.begin(), files.end());
    for (std::string& f : files) out.push_back({std::move(f), false});
  }
  return out;
}

}  // namespace

std::string_view TokenSplitName(TokenSplit split) {
  return split == TokenSplit::kTrain ? "train" : "val";
}

Status WriteTokenFile(const std::string& path, std::span<const uint16_t> tokens) {
  const auto n = static_cast<int64_t>(tokens.size());
  if (n > kMaxTokensPerFile) {
    return InvalidArgument("token file " + path + ": " + std::to_string(n) +
                           " tokens are more than one file holds (" +
                           std::to_string(kMaxTokensPerFile) + ")");
  }
  std::string bytes = TokenFileSkeleton(n);
  if (n > 0) std::memcpy(bytes.data() + kTokenHeaderBytes, tokens.data(), tokens.size_bytes());
  return WriteFileAtomic(path, bytes);
}

Result<std::vector<std::string>> ListTokenFiles(const std::string& dir, TokenSplit split) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) return NotFound("token directory not found: " + dir);
  if (!fs::is_directory(st))
    return InvalidArgument("token directory " + dir + " is not a directory");
  const std::string mark = "_" + std::string(TokenSplitName(split));
  std::vector<std::string> files;
  fs::directory_iterator it(dir, ec);
  if (ec) return IoError("list token directory " + dir + ": " + ec.message());
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    if (!name.ends_with(".bin") || name.find(mark) == std::string::npos) continue;
    if (e.is_regular_file(ec)) files.push_back(e.path().string());
  }
  if (files.empty()) {
    return NotFound("no " + std::string(TokenSplitName(split)) + " token files in " + dir +
                    " (names ending in .bin that contain '" + mark + "')");
  }
  std::sort(files.begin(), files.end());
  return files;
}

Result<TokenFileInfo> InspectTokenFile(const std::string& path) {
  COHORT_ASSIGN_OR_RETURN(Mapping m, MapTokenFile(path));
  TokenFileInfo info;
  info.path = path;
  info.tokens = m.count;
  if (m.count > 0) info.max_token = *std::max_element(m.tokens, m.tokens + m.count);
  Unmap(m);
  return info;
}

struct TokenDataset::MappedFile : Mapping {};

TokenDataset::TokenDataset() = default;

TokenDataset::~TokenDataset() {
  for (MappedFile& f : files_) Unmap(f);
}

Result<std::unique_ptr<TokenDataset>> TokenDataset::Open(const std::string& dir, TokenSplit split,
                                                         int64_t vocab) {
  if (vocab < 1)
    return InvalidArgument("vocabulary size must be at least 1, not " + std::to_string(vocab));
  COHORT_ASSIGN_OR_RETURN(std::vector<std::string> paths, ListTokenFiles(dir, split));
  std::unique_ptr<TokenDataset> ds(new TokenDataset());
  ds->dir_ = dir;
  ds->split_ = split;
  for (const std::string& path : paths) {
    COHORT_ASSIGN_OR_RETURN(Mapping m, MapTokenFile(path));
    ds->files_.push_back(MappedFile{m});
    ds->offsets_.push_back(ds->total_tokens_);
    ds->total_tokens_ += m.count;
    if (vocab > 65535) continue;  // every uint16 fits
    for (int64_t i = 0; i < m.count; ++i) {
      if (m.tokens[i] >= vocab) {
        return InvalidArgument("token " + std::to_string(m.tokens[i]) + " at position " +
                               std::to_string(i) + " is beyond the vocabulary " +
                               std::to_string(vocab) + " of the config: " + path);
      }
    }
  }
  return ds;
}

std::vector<std::string> TokenDataset::files() const {
  std::vector<std::string> out;
  for (const MappedFile& f : files_) out.push_back(f.path);
  return out;
}

uint16_t TokenDataset::token(int64_t i) const {
  COHORT_CHECK(i >= 0 && i < total_tokens_) << "token " << i << " of " << total_tokens_;
  int32_t t;
  Copy(i, 1, &t);
  return static_cast<uint16_t>(t);
}

void TokenDataset::Copy(int64_t start, int64_t n, int32_t* out) const {
  COHORT_CHECK(start >= 0 && n >= 0 && start + n <= total_tokens_);
  // The last file starting at or before `start` (empty files share an offset
  // with the next one; upper_bound skips past them).
  auto f = static_cast<size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), start) -
                               offsets_.begin() - 1);
  while (n > 0) {
    COHORT_CHECK_LT(f, files_.size());
    const MappedFile& m = files_[f];
    const int64_t off = start - offsets_[f];
    const int64_t take = std::min(n, m.count - off);
    for (int64_t i = 0; i < take; ++i) out[i] = m.tokens[off + i];
    if (take > 0) {
      out += take;
      start += take;
      n -= take;
    }
    ++f;
  }
}

int64_t TokenDataset::WindowStart(uint64_t seed, int64_t step, int64_t sample, int64_t tokens,
                                  int64_t context) {
  COHORT_CHECK(context >= 1 && tokens >= context + 1)
      << "no window of context " << context << " in " << tokens << " tokens";
  const uint64_t h = HashCombine(seed, static_cast<uint64_t>(step), static_cast<uint64_t>(sample));
  return static_cast<int64_t>(h % static_cast<uint64_t>(tokens - context));
}

Status TokenDataset::Fill(uint64_t seed, int64_t step, int64_t first, int64_t count,
                          int64_t context, int32_t* x, int32_t* y) const {
  if (context < 1)
    return InvalidArgument("context must be at least 1, not " + std::to_string(context));
  if (count < 0 || first < 0 || step < 0) {
    return InvalidArgument("bad window request: step " + std::to_string(step) + ", first sample " +
                           std::to_string(first) + ", count " + std::to_string(count));
  }
  if (total_tokens_ < context + 1) {
    return FailedPrecondition("the " + std::string(TokenSplitName(split_)) + " split of " + dir_ +
                              " holds " + std::to_string(total_tokens_) +
                              " tokens, fewer than the " + std::to_string(context + 1) +
                              " that one window of context " + std::to_string(context) + " needs");
  }
  for (int64_t j = 0; j < count; ++j) {
    const int64_t p = WindowStart(seed, step, first + j, total_tokens_, context);
    Copy(p, context, x + j * context);
    Copy(p + 1, context, y + j * context);
  }
  return Status::Ok();
}

namespace {

// Reads the inputs' text into one string, one byte per token: binary files
// are skipped (an error when named explicitly), and the total stays within
// kMaxTokenizeBytes.
Result<std::string> ReadCorpus(const std::vector<Candidate>& inputs, TokenizeReport* report,
                               std::ostream* progress) {
  std::string corpus;  // one byte per token
  int64_t next_progress = kProgressBytes;
  for (const Candidate& c : inputs) {
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(c.path, ec));
    if (ec) return IoError("size of input " + c.path + ": " + ec.message());
    if (size > kMaxTokenizeBytes) {
      return InvalidArgument("input " + c.path + " is larger than the " + MiB(kMaxTokenizeBytes) +
                             " one run tokenizes; split it");
    }
    COHORT_ASSIGN_OR_RETURN(std::string contents, ReadFile(c.path));
    const std::string why = BinaryReason(contents);
    if (!why.empty()) {
      if (c.explicit_input)
        return InvalidArgument("input " + c.path + " is binary, not text: " + why);
      ++report->files_skipped_binary;
      continue;
    }
    if (static_cast<int64_t>(corpus.size() + contents.size()) > kMaxTokenizeBytes) {
      return InvalidArgument("the inputs hold more than the " + MiB(kMaxTokenizeBytes) +
                             " of text one run tokenizes (at " + c.path +
                             "); tokenize them in parts");
    }
    corpus += contents;
    ++report->files_read;
    if (progress != nullptr && static_cast<int64_t>(corpus.size()) >= next_progress) {
      *progress << "tokenize: read " << MiB(static_cast<int64_t>(corpus.size())) << " from "
                << report->files_read << " files" << std::endl;
      next_progress = static_cast<int64_t>(corpus.size()) + kProgressBytes;
    }
  }
  return corpus;
}

// A token file to write: [begin, end) of the corpus.
struct PlannedFile {
  std::string path;
  int64_t begin, end;
};

// The training shards over the first `train` bytes, then the validation file
// over the rest of `total` (when there is a rest).
std::vector<PlannedFile> PlanTokenFiles(const TokenizeOptions& opt, int64_t train, int64_t total) {
  std::vector<PlannedFile> plan;
  for (int i = 0; i < opt.shards; ++i) {
    plan.push_back({(fs::path(opt.out_dir) / ShardName(opt.name, TokenSplit::kTrain, i)).string(),
                    train * i / opt.shards, train * (i + 1) / opt.shards});
  }
  if (total > train) {
    plan.push_back({(fs::path(opt.out_dir) / ShardName(opt.name, TokenSplit::kVal, 0)).string(),
                    train, total});
  }
  return plan;
}

// A token file already in `out_dir` that this run does not overwrite would be
// read as part of the new dataset's stream: an error.
Status CheckNoStrayTokenFiles(const std::string& out_dir, const std::vector<PlannedFile>& plan) {
  std::set<std::string> planned_names;
  for (const PlannedFile& p : plan) planned_names.insert(fs::path(p.path).filename().string());
  for (TokenSplit split : {TokenSplit::kTrain, TokenSplit::kVal}) {
    auto existing = ListTokenFiles(out_dir, split);
    if (!existing.ok()) continue;  // none of this split
    for (const std::string& f : *existing) {
      if (!planned_names.contains(fs::path(f).filename().string())) {
        return FailedPrecondition(
            "output directory " + out_dir + " already holds token file " + f +
            ", which this run would not overwrite and which would be read with "
            "its files; remove it or choose another output directory");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Result<TokenizeReport> TokenizeText(const TokenizeOptions& opt, std::ostream* progress) {
  COHORT_RETURN_IF_ERROR(ValidateOptions(opt));
  TokenizeReport report;
  COHORT_ASSIGN_OR_RETURN(std::vector<Candidate> inputs, ListInputs(opt.inputs, &report));
  COHORT_ASSIGN_OR_RETURN(const std::string corpus, ReadCorpus(inputs, &report, progress));
  const auto total = static_cast<int64_t>(corpus.size());
  if (total == 0) {
    return InvalidArgument("the inputs hold no text: " + std::to_string(report.files_read) +
                           " empty text files, " + std::to_string(report.files_skipped_binary) +
                           " binary files skipped");
  }
  int64_t val = std::llround(opt.val_fraction * static_cast<double>(total));
  if (opt.val_fraction > 0) val = std::max<int64_t>(val, 1);
  const int64_t train = total - val;
  if (train < opt.shards) {
    return InvalidArgument("the inputs hold " + std::to_string(total) +
                           " bytes of text: too few for " + std::to_string(val) +
                           " validation tokens and " + std::to_string(opt.shards) +
                           " non-empty training shards");
  }
  if ((train + opt.shards - 1) / opt.shards > kMaxTokensPerFile || val > kMaxTokensPerFile) {
    return InvalidArgument("a token file holds at most " + std::to_string(kMaxTokensPerFile) +
                           " tokens; use more training shards or a smaller validation fraction");
  }

  const std::vector<PlannedFile> plan = PlanTokenFiles(opt, train, total);
  COHORT_RETURN_IF_ERROR(MakeDirs(opt.out_dir));
  COHORT_RETURN_IF_ERROR(CheckNoStrayTokenFiles(opt.out_dir, plan));

  const bool long_input = total > kProgressBytes;
  for (const PlannedFile& p : plan) {
    const int64_t n = p.end - p.begin;
    if (progress != nullptr && long_input) {
      *progress << "tokenize: writing " << p.path << " (" << n << " tokens)" << std::endl;
    }
    std::string bytes = TokenFileSkeleton(n);
    for (int64_t i = 0; i < n; ++i) {
      const auto t = static_cast<uint16_t>(
          static_cast<unsigned char>(corpus[static_cast<size_t>(p.begin + i)]));
      std::memcpy(bytes.data() + kTokenHeaderBytes + 2 * i, &t, sizeof(t));
    }
    COHORT_RETURN_IF_ERROR(WriteFileAtomic(p.path, bytes));
    report.files_written.push_back(p.path);
  }
  report.bytes = total;
  report.train_tokens = train;
  report.val_tokens = val;
  return report;
}

}  // namespace cohort
