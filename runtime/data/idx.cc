#include "runtime/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

namespace cohort {

namespace fs = std::filesystem;

namespace {

// gzread takes an unsigned count and returns an int: read at most this much a call.
constexpr int64_t kReadChunkBytes = int64_t{1} << 30;
// zlib's read buffer (its default is 8 KiB; larger reads the file in fewer calls).
constexpr unsigned kGzBufferBytes = 1u << 20;
// Trailing data is counted up to this many bytes for the error message.
constexpr int64_t kMaxTrailingCount = int64_t{1} << 20;

std::string Hex32(uint32_t v) {
  char s[16];
  std::snprintf(s, sizeof(s), "0x%08x", v);
  return s;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// The file name prefix of a split, as MNIST names its files.
std::string IdxPrefix(IdxSplit split) { return split == IdxSplit::kTrain ? "train" : "t10k"; }

std::string PackageHint() {
  return std::string("Fashion-MNIST comes in Debian's package ") + kFashionMnistPackage +
         " (scripts/setup installs it; or `apt-get install " + kFashionMnistPackage +
         "`), which puts its files in " + kFashionMnistDir;
}

// One file read through zlib: gzip'd data is decompressed, anything else is
// passed through as is. Closed by the destructor.
class GzReader {
 public:
  static Result<std::unique_ptr<GzReader>> Open(const std::string& path) {
    errno = 0;
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) {
      return IoError(path + ": cannot open: " +
                     (errno != 0 ? std::strerror(errno) : "zlib could not allocate its state"));
    }
    gzbuffer(f, kGzBufferBytes);
    return std::unique_ptr<GzReader>(new GzReader(f, path));
  }
  ~GzReader() { gzclose(f_); }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  const std::string& path() const { return path_; }
  // True once a read found the gzip stream cut off before its end.
  bool stream_cut() const { return stream_cut_; }

  // Reads up to n bytes into out; returns how many there were before the end
  // of the data (less than n only at the end).
  Result<int64_t> Read(uint8_t* out, int64_t n) {
    int64_t got = 0;
    while (got < n) {
      const auto chunk = static_cast<unsigned>(std::min(n - got, kReadChunkBytes));
      errno = 0;
      const int r = gzread(f_, out + got, chunk);
      if (r > 0) {
        got += r;
        continue;
      }
      int err = Z_OK;
      const char* msg = gzerror(f_, &err);
      if (err == Z_OK) break;    // the end of the data
      if (err == Z_BUF_ERROR) {  // "unexpected end of file": the gzip stream was cut short
        stream_cut_ = true;
        break;
      }
      if (err == Z_ERRNO) return IoError(path_ + ": read failed: " + std::strerror(errno));
      return DataLoss(path_ + ": corrupt gzip data (zlib: " + msg + ")");
    }
    return got;
  }

  // Bytes left before the end of the data, counted up to kMaxTrailingCount.
  Result<int64_t> CountRest() {
    std::vector<uint8_t> buf(64 << 10);
    int64_t total = 0;
    while (total < kMaxTrailingCount) {
      COHORT_ASSIGN_OR_RETURN(const int64_t got,
                              Read(buf.data(), static_cast<int64_t>(buf.size())));
      total += got;
      if (got < static_cast<int64_t>(buf.size())) break;
    }
    return total;
  }

 private:
  GzReader(gzFile f, std::string path) : f_(f), path_(std::move(path)) {}

  gzFile f_;  // never null
  std::string path_;
  bool stream_cut_ = false;
};

std::string CutNote(const GzReader& r) {
  return r.stream_cut() ? " (and its gzip stream ends early: the .gz file itself was cut short)"
                        : "";
}

// The header is read; reads exactly `n` payload bytes and checks nothing follows.
// `header` is the header's size and `what` says what the header promised.
Status ReadPayload(GzReader& r, int64_t header, const std::string& what, uint8_t* out, int64_t n) {
  COHORT_ASSIGN_OR_RETURN(const int64_t got, r.Read(out, n));
  if (got < n) {
    return DataLoss(r.path() + ": truncated: its header says " + what + ", " + std::to_string(n) +
                    " bytes after the " + std::to_string(header) + "-byte header, but only " +
                    std::to_string(got) + " follow" + CutNote(r));
  }
  COHORT_ASSIGN_OR_RETURN(const int64_t extra, r.CountRest());
  if (extra > 0) {
    return DataLoss(r.path() + ": trailing data: its header says " + what + " (" +
                    std::to_string(header + n) + " bytes in all) but " +
                    (extra >= kMaxTrailingCount ? "at least " : "") + std::to_string(extra) +
                    " more bytes follow");
  }
  if (r.stream_cut()) {
    return DataLoss(r.path() +
                    ": truncated: its gzip stream ends early (the .gz file was cut "
                    "short) though the data it holds is complete");
  }
  return Status::Ok();
}

// Reads the `header` bytes of the header and checks the magic number.
Status ReadHeader(GzReader& r, uint32_t magic, const char* kind, uint8_t* out, int64_t header) {
  COHORT_ASSIGN_OR_RETURN(const int64_t got, r.Read(out, header));
  if (got >= 4) {
    const uint32_t m = BigEndian32(out);
    if (m != magic) {
      std::string hint = "not an IDX " + std::string(kind) + " file";
      if (m == kIdxImagesMagic) hint = "an images file, not a labels file";
      if (m == kIdxLabelsMagic) hint = "a labels file, not an images file";
      return DataLoss(r.path() + ": wrong magic number " + Hex32(m) + ", not " + Hex32(magic) +
                      " (IDX " + kind + "): " + hint);
    }
  }
  if (got < header) {
    return DataLoss(r.path() + ": truncated: " + std::to_string(got) + " bytes, shorter than the " +
                    std::to_string(header) + "-byte IDX " + kind + " header" + CutNote(r));
  }
  return Status::Ok();
}

// dir/name.gz when it exists, else dir/name; NotFound when neither does.
Result<std::string> FindFile(const std::string& dir, const std::string& name) {
  const fs::path gz = fs::path(dir) / (name + ".gz");
  const fs::path plain = fs::path(dir) / name;
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz.string();
  if (fs::exists(plain, ec)) return plain.string();
  return NotFound(gz.string() + ": no such file (nor " + name + " uncompressed) in " + dir + "; " +
                  PackageHint());
}

}  // namespace

std::string_view IdxSplitName(IdxSplit split) {
  return split == IdxSplit::kTrain ? "train" : "test";
}

std::string IdxImagesFileName(IdxSplit split) { return IdxPrefix(split) + "-images-idx3-ubyte"; }
std::string IdxLabelsFileName(IdxSplit split) { return IdxPrefix(split) + "-labels-idx1-ubyte"; }

Result<std::unique_ptr<IdxDataset>> IdxDataset::Open(const std::string& dir, IdxSplit split) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return NotFound(dir + (fs::exists(dir, ec) ? ": not a directory" : ": no such directory") +
                    "; " + PackageHint());
  }
  std::unique_ptr<IdxDataset> ds(new IdxDataset());
  COHORT_ASSIGN_OR_RETURN(ds->labels_path_, FindFile(dir, IdxLabelsFileName(split)));
  COHORT_ASSIGN_OR_RETURN(ds->images_path_, FindFile(dir, IdxImagesFileName(split)));

  // Labels first: they are small, and their count is checked against the
  // images header before the pixels are read.
  {
    COHORT_ASSIGN_OR_RETURN(auto r, GzReader::Open(ds->labels_path_));
    uint8_t h[kIdxLabelsHeaderBytes];
    COHORT_RETURN_IF_ERROR(ReadHeader(*r, kIdxLabelsMagic, "labels", h, kIdxLabelsHeaderBytes));
    const int64_t count = BigEndian32(h + 4);
    if (count > kMaxIdxPixelBytes) {
      return DataLoss(r->path() + ": its header says " + std::to_string(count) +
                      " labels, more than the " + std::to_string(kMaxIdxPixelBytes) +
                      " this reader holds in memory");
    }
    ds->labels_.resize(static_cast<size_t>(count));
    COHORT_RETURN_IF_ERROR(ReadPayload(*r, kIdxLabelsHeaderBytes, std::to_string(count) + " labels",
                                       ds->labels_.data(), count));
    for (int64_t i = 0; i < count; ++i) {
      const int label = ds->labels_[static_cast<size_t>(i)];
      if (label >= kIdxClasses) {
        return DataLoss(r->path() + ": label " + std::to_string(label) + " at index " +
                        std::to_string(i) + " is outside [0, " + std::to_string(kIdxClasses) + ")");
      }
    }
  }

  COHORT_ASSIGN_OR_RETURN(auto r, GzReader::Open(ds->images_path_));
  uint8_t h[kIdxImagesHeaderBytes];
  COHORT_RETURN_IF_ERROR(ReadHeader(*r, kIdxImagesMagic, "images", h, kIdxImagesHeaderBytes));
  const int64_t count = BigEndian32(h + 4);
  const int64_t rows = BigEndian32(h + 8);
  const int64_t cols = BigEndian32(h + 12);
  for (const auto& [name, side] : {std::pair{"rows", rows}, std::pair{"cols", cols}}) {
    if (side < 1 || side > kMaxIdxImageSide) {
      return DataLoss(r->path() + ": its header says " + std::to_string(side) + " " + name +
                      " per image; an image side must be in [1, " +
                      std::to_string(kMaxIdxImageSide) + "]");
    }
  }
  const std::string what = std::to_string(count) + " images of " + std::to_string(rows) + "x" +
                           std::to_string(cols) + " pixels";
  // rows * cols <= 2^24 and count < 2^32: the product fits an int64.
  const int64_t bytes = count * rows * cols;
  if (bytes > kMaxIdxPixelBytes) {
    return DataLoss(r->path() + ": its header says " + what + ", " + std::to_string(bytes) +
                    " bytes, more than the " + std::to_string(kMaxIdxPixelBytes) +
                    " this reader holds in memory");
  }
  if (count != ds->samples()) {
    return DataLoss(r->path() + " holds " + std::to_string(count) + " images but " +
                    ds->labels_path_ + " holds " + std::to_string(ds->samples()) +
                    " labels: each image needs one label");
  }
  ds->rows_ = rows;
  ds->cols_ = cols;
  ds->pixels_.resize(static_cast<size_t>(bytes));
  COHORT_RETURN_IF_ERROR(ReadPayload(*r, kIdxImagesHeaderBytes, what, ds->pixels_.data(), bytes));
  return ds;
}

std::span<const uint8_t> IdxDataset::image(int64_t i) const {
  COHORT_CHECK(i >= 0 && i < samples()) << "image " << i << " of " << samples();
  const auto f = static_cast<size_t>(features());
  return std::span<const uint8_t>(pixels_).subspan(static_cast<size_t>(i) * f, f);
}

int32_t IdxDataset::label(int64_t i) const {
  COHORT_CHECK(i >= 0 && i < samples()) << "label " << i << " of " << samples();
  return labels_[static_cast<size_t>(i)];
}

Status IdxDataset::Fill(std::span<const int64_t> indices, float* x, int32_t* y) const {
  const int64_t f = features();
  for (size_t r = 0; r < indices.size(); ++r) {
    const int64_t id = indices[r];
    if (id < 0 || id >= samples()) {
      return InvalidArgument("sample " + std::to_string(id) + " is outside [0, " +
                             std::to_string(samples()) + ") of " + images_path_);
    }
    const uint8_t* src = pixels_.data() + id * f;
    float* dst = x + static_cast<int64_t>(r) * f;
    for (int64_t p = 0; p < f; ++p) dst[p] = static_cast<float>(src[p]) / 255.0f;
    y[r] = labels_[static_cast<size_t>(id)];
  }
  return Status::Ok();
}

}  // namespace cohort
