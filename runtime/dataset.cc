#include "runtime/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <ostream>
#include <set>

#include "core/crc32c.h"
#include "core/file_util.h"
#include "runtime/rng.h"
#include "sharding/data_plan.h"

namespace cohort {
namespace {

constexpr uint64_t kStreamInput = 1;
constexpr uint64_t kStreamTeacherW1 = 2;
constexpr uint64_t kStreamTeacherB1 = 3;
constexpr uint64_t kStreamTeacherW2 = 4;
constexpr uint64_t kStreamShuffle = 5;
const float kSqrt3 = std::sqrt(3.0f);

uint32_t HeaderCrc(ShardHeader h) {
  h.header_crc = 0;
  return Crc32c(&h, sizeof(h));
}

}  // namespace

SyntheticDataset::SyntheticDataset(TeacherSpec spec, int64_t samples)
    : spec_(spec), samples_(samples) {
  const int64_t f = spec.features, h = spec.hidden, c = spec.classes;
  w1_.resize(static_cast<size_t>(f * h));
  b1_.resize(static_cast<size_t>(h));
  w2_.resize(static_cast<size_t>(h * c));
  // Unit-variance inputs through 1/sqrt(fan_in) weights keep tanh in its
  // sensitive range; the output gain makes the labels a crisp function of x.
  const float a1 = kSqrt3 / std::sqrt(static_cast<float>(f)) * 1.5f;
  const float a2 = kSqrt3 / std::sqrt(static_cast<float>(h)) * 2.0f;
  for (size_t i = 0; i < w1_.size(); ++i)
    w1_[i] = UniformFloat(HashCombine(spec.seed, kStreamTeacherW1, i), -a1, a1);
  for (size_t i = 0; i < b1_.size(); ++i)
    b1_[i] = UniformFloat(HashCombine(spec.seed, kStreamTeacherB1, i), -0.1f, 0.1f);
  for (size_t i = 0; i < w2_.size(); ++i)
    w2_[i] = UniformFloat(HashCombine(spec.seed, kStreamTeacherW2, i), -a2, a2);
}

Status SyntheticDataset::Fill(std::span<const int64_t> indices, float* x, int32_t* y) const {
  const int64_t f = spec_.features, h = spec_.hidden, c = spec_.classes;
  std::vector<float> hidden(static_cast<size_t>(h));
  std::vector<float> logits(static_cast<size_t>(c));
  for (size_t r = 0; r < indices.size(); ++r) {
    const int64_t id = indices[r];
    if (id < 0 || id >= samples_) {
      return InvalidArgument("sample id " + std::to_string(id) + " outside [0, " +
                             std::to_string(samples_) + ")");
    }
    float* xr = x + static_cast<int64_t>(r) * f;
    // One 64-bit hash gives two 24-bit uniforms.
    const uint64_t key = HashCombine(spec_.seed, kStreamInput, static_cast<uint64_t>(id));
    for (int64_t j = 0; j < f; j += 2) {
      const uint64_t bits = Mix64(key + static_cast<uint64_t>(j));
      xr[j] = UniformFloat(bits, -kSqrt3, kSqrt3);
      if (j + 1 < f) xr[j + 1] = UniformFloat(bits << 24, -kSqrt3, kSqrt3);
    }
    // The label is computed per sample in a fixed order (vectorised across
    // the hidden units, never reassociated), so it does not depend on which
    // batch the sample lands in.
    std::copy(b1_.begin(), b1_.end(), hidden.begin());
    for (int64_t j = 0; j < f; ++j) {
      const float xv = xr[j];
      const float* w = w1_.data() + j * h;
      for (int64_t k = 0; k < h; ++k) hidden[static_cast<size_t>(k)] += xv * w[k];
    }
    std::fill(logits.begin(), logits.end(), 0.0f);
    for (int64_t k = 0; k < h; ++k) {
      const float hv = std::tanh(hidden[static_cast<size_t>(k)]);
      const float* w = w2_.data() + k * c;
      for (int64_t m = 0; m < c; ++m) logits[static_cast<size_t>(m)] += hv * w[m];
    }
    y[r] = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  return Status::Ok();
}

std::string ShardFileName(int shard, int num_shards) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "shard-%05d-of-%05d.cds", shard, num_shards);
  return buf;
}

Result<int64_t> GenerateShards(const DataGenOptions& opt, std::ostream* progress) {
  if (opt.num_shards <= 0) return InvalidArgument("--shards must be positive");
  if (opt.samples <= 0) return InvalidArgument("--samples must be positive");
  if (opt.samples % opt.num_shards != 0) {
    return InvalidArgument("--samples " + std::to_string(opt.samples) +
                           " is not a multiple of --shards " + std::to_string(opt.num_shards) +
                           " (every shard holds the same number of samples)");
  }
  if (opt.teacher.features <= 0 || opt.teacher.classes <= 1 || opt.teacher.hidden <= 0) {
    return InvalidArgument(
        "--features and --teacher-hidden must be positive and --classes at least 2");
  }
  COHORT_RETURN_IF_ERROR(MakeDirs(opt.out_dir));
  SyntheticDataset data(opt.teacher, opt.samples);
  const int64_t per_shard = opt.samples / opt.num_shards;
  const int64_t f = opt.teacher.features;
  int64_t written = 0;
  std::vector<int64_t> ids(static_cast<size_t>(per_shard));
  for (int s = 0; s < opt.num_shards; ++s) {
    std::iota(ids.begin(), ids.end(), s * per_shard);
    const size_t xbytes = static_cast<size_t>(per_shard * f) * sizeof(float);
    const size_t ybytes = static_cast<size_t>(per_shard) * sizeof(int32_t);
    std::string buf(sizeof(ShardHeader) + xbytes + ybytes, '\0');
    auto* x = reinterpret_cast<float*>(buf.data() + sizeof(ShardHeader));
    auto* y = reinterpret_cast<int32_t*>(buf.data() + sizeof(ShardHeader) + xbytes);
    COHORT_RETURN_IF_ERROR(data.Fill(ids, x, y));
    ShardHeader h{};
    std::memcpy(h.magic, kShardMagic, 8);
    h.version = kShardVersion;
    h.samples = static_cast<uint64_t>(per_shard);
    h.first_sample = static_cast<uint64_t>(s * per_shard);
    h.total_samples = static_cast<uint64_t>(opt.samples);
    h.features = static_cast<uint32_t>(f);
    h.classes = static_cast<uint32_t>(opt.teacher.classes);
    h.shard_index = static_cast<uint32_t>(s);
    h.num_shards = static_cast<uint32_t>(opt.num_shards);
    h.payload_crc = Crc32c(buf.data() + sizeof(ShardHeader), xbytes + ybytes);
    h.header_crc = HeaderCrc(h);
    std::memcpy(buf.data(), &h, sizeof(h));
    const std::string path = opt.out_dir + "/" + ShardFileName(s, opt.num_shards);
    COHORT_RETURN_IF_ERROR(WriteFileAtomic(path, buf));
    written += static_cast<int64_t>(buf.size());
    if (progress) {
      *progress << "wrote " << path << " (" << per_shard << " samples, " << buf.size() / 1024
                << " KiB) [" << (s + 1) << "/" << opt.num_shards << "]\n"
                << std::flush;
    }
  }
  return written;
}

namespace {

Result<ShardHeader> ReadHeader(const std::string& path, uint64_t* file_size) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFound("data shard missing: " + path);
  *file_size = std::filesystem::file_size(path, ec);
  if (ec) return IoError("cannot stat data shard " + path + ": " + ec.message());
  if (*file_size < sizeof(ShardHeader)) {
    return DataLoss("data shard " + path + " is truncated: " + std::to_string(*file_size) +
                    " bytes, shorter than its 64-byte header");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot open data shard " + path);
  ShardHeader h;
  in.read(reinterpret_cast<char*>(&h), sizeof(h));
  if (!in) return IoError("cannot read the header of data shard " + path);
  if (std::memcmp(h.magic, kShardMagic, 8) != 0) {
    return DataLoss("data shard " + path +
                    " is not a Cohort shard (bad magic); regenerate it with `cohort data gen`");
  }
  if (HeaderCrc(h) != h.header_crc) {
    return DataLoss("data shard " + path +
                    " has a corrupted header (checksum mismatch at offset 0)");
  }
  if (h.version != kShardVersion) {
    return DataLoss("data shard " + path + " has format version " + std::to_string(h.version) +
                    ", this build reads version " + std::to_string(kShardVersion));
  }
  const uint64_t expect = sizeof(ShardHeader) + h.samples * h.features * 4 + h.samples * 4;
  if (*file_size != expect) {
    return DataLoss(
        "data shard " + path + " is " + (*file_size < expect ? "truncated" : "too long") + ": " +
        std::to_string(*file_size) + " bytes, its header says " + std::to_string(expect));
  }
  return h;
}

}  // namespace

Result<std::unique_ptr<ShardedDataset>> ShardedDataset::Open(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return NotFound("dataset directory not found: " + dir +
                    " (write one with `cohort data gen --out " + dir + "`)");
  }
  // The shard count comes from any shard's name; every index below it must exist.
  int num_shards = -1;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    int i = 0, n = 0;
    if (std::sscanf(e.path().filename().c_str(), "shard-%d-of-%d.cds", &i, &n) == 2) {
      if (num_shards != -1 && n != num_shards) {
        return InvalidArgument("dataset " + dir + " mixes shard sets of " +
                               std::to_string(num_shards) + " and " + std::to_string(n) +
                               " shards");
      }
      num_shards = n;
    }
  }
  if (num_shards <= 0)
    return NotFound("dataset directory " + dir + " holds no shard-*-of-*.cds files");
  auto ds = std::unique_ptr<ShardedDataset>(new ShardedDataset());
  ds->dir_ = dir;
  ds->loaded_.resize(static_cast<size_t>(num_shards));
  for (int s = 0; s < num_shards; ++s) {
    const std::string path = dir + "/" + ShardFileName(s, num_shards);
    uint64_t size = 0;
    COHORT_ASSIGN_OR_RETURN(ShardHeader h, ReadHeader(path, &size));
    if (static_cast<int>(h.shard_index) != s || static_cast<int>(h.num_shards) != num_shards) {
      return DataLoss("data shard " + path + " says it is shard " + std::to_string(h.shard_index) +
                      " of " + std::to_string(h.num_shards) + "; the file was renamed or mixed up");
    }
    if (!ds->headers_.empty()) {
      const ShardHeader& h0 = ds->headers_[0];
      if (h.features != h0.features || h.classes != h0.classes ||
          h.total_samples != h0.total_samples || h.samples != h0.samples ||
          h.first_sample != h0.samples * static_cast<uint64_t>(s)) {
        return DataLoss("data shard " + path +
                        " does not match shard 0 (features, classes or sample ranges differ)");
      }
    }
    ds->headers_.push_back(h);
  }
  return ds;
}

Status ShardedDataset::Load(std::span<const int> shards) {
  for (int s : shards) {
    if (s < 0 || s >= num_shards())
      return InvalidArgument("no shard " + std::to_string(s) + " in " + dir_);
    const std::string path = dir_ + "/" + ShardFileName(s, num_shards());
    uint64_t size = 0;
    COHORT_ASSIGN_OR_RETURN(ShardHeader h, ReadHeader(path, &size));
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    if (bytes->size() != size) return DataLoss("data shard " + path + " changed while it was read");
    const char* payload = bytes->data() + sizeof(ShardHeader);
    const size_t payload_bytes = bytes->size() - sizeof(ShardHeader);
    if (Crc32c(payload, payload_bytes) != h.payload_crc) {
      return DataLoss("data shard " + path + " is corrupted: payload checksum mismatch (bytes " +
                      std::to_string(sizeof(ShardHeader)) + ".." + std::to_string(bytes->size()) +
                      "); regenerate it with `cohort data gen`");
    }
    auto l = std::make_unique<Loaded>();
    const size_t nx = h.samples * h.features;
    l->x.resize(nx);
    l->y.resize(h.samples);
    std::memcpy(l->x.data(), payload, nx * 4);
    std::memcpy(l->y.data(), payload + nx * 4, h.samples * 4);
    for (int32_t label : l->y) {
      if (label < 0 || label >= static_cast<int32_t>(h.classes)) {
        return DataLoss("data shard " + path + " holds label " + std::to_string(label) +
                        " outside [0, " + std::to_string(h.classes) + ")");
      }
    }
    loaded_[static_cast<size_t>(s)] = std::move(l);
  }
  return Status::Ok();
}

std::vector<int64_t> ShardedDataset::LoadedSampleIds() const {
  std::vector<int64_t> ids;
  for (int s = 0; s < num_shards(); ++s) {
    if (!loaded_[static_cast<size_t>(s)]) continue;
    const ShardHeader& h = headers_[static_cast<size_t>(s)];
    for (uint64_t i = 0; i < h.samples; ++i)
      ids.push_back(static_cast<int64_t>(h.first_sample + i));
  }
  return ids;
}

Status ShardedDataset::Fill(std::span<const int64_t> indices, float* x, int32_t* y) const {
  const int64_t per = static_cast<int64_t>(headers_[0].samples);
  const int64_t f = features();
  for (size_t r = 0; r < indices.size(); ++r) {
    const int64_t id = indices[r];
    const int64_t s = per > 0 ? id / per : -1;
    if (id < 0 || s >= num_shards() || !loaded_[static_cast<size_t>(s)]) {
      return InvalidArgument("sample " + std::to_string(id) +
                             " is not in a shard this rank loaded");
    }
    const Loaded& l = *loaded_[static_cast<size_t>(s)];
    const int64_t off = id - s * per;
    std::memcpy(x + static_cast<int64_t>(r) * f, l.x.data() + off * f, static_cast<size_t>(f) * 4);
    y[r] = l.y[static_cast<size_t>(off)];
  }
  return Status::Ok();
}

Status VerifyShards(const std::string& dir) {
  COHORT_ASSIGN_OR_RETURN(auto ds, ShardedDataset::Open(dir));
  for (int s = 0; s < ds->num_shards(); ++s) {
    const int one[] = {s};
    COHORT_RETURN_IF_ERROR(ds->Load(one));
    ds->Unload(s);  // keep memory flat
  }
  return Status::Ok();
}

namespace {
void SeededShuffle(std::vector<int64_t>& v, uint64_t seed) {
  SplitMix64 rng(seed);
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.Below(i));
    std::swap(v[i - 1], v[j]);
  }
}
}  // namespace

GlobalSampler::GlobalSampler(int64_t samples, int64_t batch_per_rank, int rank, int world,
                             uint64_t seed)
    : samples_(samples), batch_(batch_per_rank), rank_(rank), world_(world), seed_(seed) {
  COHORT_CHECK(samples_ >= batch_ * world_) << "dataset smaller than one global batch";
}

void GlobalSampler::Shuffle(int64_t epoch) {
  perm_.resize(static_cast<size_t>(samples_));
  std::iota(perm_.begin(), perm_.end(), 0);
  SeededShuffle(perm_, HashCombine(seed_, kStreamShuffle, static_cast<uint64_t>(epoch)));
  epoch_ = epoch;
}

void GlobalSampler::Indices(int64_t step, std::span<int64_t> out) {
  const int64_t global = batch_ * world_;
  const int64_t per_epoch = samples_ / global;
  const int64_t epoch = step / per_epoch;
  if (epoch != epoch_) Shuffle(epoch);
  const int64_t start = (step % per_epoch) * global + rank_ * batch_;
  for (int64_t i = 0; i < batch_; ++i)
    out[static_cast<size_t>(i)] = perm_[static_cast<size_t>(start + i)];
}

ShardWalkSampler::ShardWalkSampler(std::vector<Shard> owned, int64_t batch, uint64_t member_id,
                                   uint64_t seed)
    : owned_(std::move(owned)), batch_(batch), member_id_(member_id), seed_(seed) {
  for (const Shard& s : owned_) total_ += s.samples;
  COHORT_CHECK(total_ >= batch_) << "fewer owned samples than one batch";
}

void ShardWalkSampler::BuildEpoch(int64_t epoch) {
  std::vector<Shard> walk = owned_;
  std::sort(walk.begin(), walk.end(), [&](const Shard& a, const Shard& b) {
    const uint64_t pa = sharding::WalkPriority(seed_, epoch, member_id_, a.index);
    const uint64_t pb = sharding::WalkPriority(seed_, epoch, member_id_, b.index);
    return pa != pb ? pa < pb : a.index < b.index;
  });
  order_.clear();
  for (const Shard& s : walk) {
    std::vector<int64_t> ids(static_cast<size_t>(s.samples));
    std::iota(ids.begin(), ids.end(), s.first_sample);
    SeededShuffle(ids, HashCombine(seed_, kStreamShuffle + 1 + static_cast<uint64_t>(s.index),
                                   static_cast<uint64_t>(epoch)));
    order_.insert(order_.end(), ids.begin(), ids.end());
  }
  epoch_ = epoch;
}

void ShardWalkSampler::Indices(int64_t step, std::span<int64_t> out) {
  const int64_t per_epoch = steps_per_epoch();
  const int64_t epoch = step / per_epoch;
  if (epoch != epoch_) BuildEpoch(epoch);
  const int64_t start = (step % per_epoch) * batch_;
  for (int64_t i = 0; i < batch_; ++i)
    out[static_cast<size_t>(i)] = order_[static_cast<size_t>(start + i)];
}

}  // namespace cohort
