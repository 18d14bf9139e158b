#pragma once
// Datasets for training: samples of `features` floats with an int32 label.
//
// Two sources share one interface:
// - SyntheticDataset: a seeded teacher network labels inputs that are a pure
//   function of (seed, sample index), so any rank can make any sample and the
//   task is learnable (the student can drive the loss far down).
// - ShardedDataset: the on-disk format that `cohort data gen` writes, one file
//   per shard, each with a checksummed header and payload. A rank loads only
//   the shards it owns.
//
// Shard file layout (little-endian), "shard-IIIII-of-NNNNN.cds":
//   ShardHeader (64 bytes, below), then features as float32 [samples][features],
//   then labels as int32 [samples]. header_crc covers the header with
//   header_crc = 0; payload_crc covers every byte after the header.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace cohort {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t features() const = 0;
  virtual int32_t classes() const = 0;
  // Writes samples `indices` (global sample ids) into x (indices.size() x
  // features, row-major) and y. Indices must be available to this rank.
  virtual Status Fill(std::span<const int64_t> indices, float* x, int32_t* y) const = 0;
};

struct TeacherSpec {
  uint64_t seed = 1;
  int64_t features = 784;
  int32_t classes = 10;
  int64_t hidden = 64;
};

class SyntheticDataset final : public Dataset {
 public:
  SyntheticDataset(TeacherSpec spec, int64_t samples);
  int64_t features() const override { return spec_.features; }
  int32_t classes() const override { return spec_.classes; }
  int64_t samples() const { return samples_; }
  Status Fill(std::span<const int64_t> indices, float* x, int32_t* y) const override;

 private:
  TeacherSpec spec_;
  int64_t samples_;
  std::vector<float> w1_, b1_, w2_;  // features x hidden, hidden, hidden x classes
};

inline constexpr char kShardMagic[8] = {'C', 'O', 'H', 'D', 'S', 'H', 'R', 'D'};
inline constexpr uint32_t kShardVersion = 1;

struct ShardHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_crc;
  uint64_t samples;        // samples in this shard
  uint64_t first_sample;   // global id of this shard's first sample
  uint64_t total_samples;  // samples in the whole dataset
  uint32_t features;
  uint32_t classes;
  uint32_t shard_index;
  uint32_t num_shards;
  uint32_t payload_crc;
  uint32_t reserved;
};
static_assert(sizeof(ShardHeader) == 64);

std::string ShardFileName(int shard, int num_shards);

struct DataGenOptions {
  std::string out_dir;
  int64_t samples = 60000;
  int num_shards = 8;
  TeacherSpec teacher;
};
// Writes the synthetic dataset as shard files (each atomically). Returns the
// bytes written. Progress goes to `progress` when non-null.
Result<int64_t> GenerateShards(const DataGenOptions& opt, std::ostream* progress);

// A shard directory with some shards loaded into memory.
class ShardedDataset final : public Dataset {
 public:
  // Reads every shard's header (checking magic, version, header CRC, and
  // that the shards agree) without loading payloads.
  static Result<std::unique_ptr<ShardedDataset>> Open(const std::string& dir);
  // Loads and verifies the given shards' payloads.
  Status Load(std::span<const int> shards);

  int num_shards() const { return static_cast<int>(headers_.size()); }
  int64_t total_samples() const { return static_cast<int64_t>(headers_[0].total_samples); }
  const ShardHeader& header(int shard) const { return headers_[static_cast<size_t>(shard)]; }
  int64_t features() const override { return headers_[0].features; }
  int32_t classes() const override { return static_cast<int32_t>(headers_[0].classes); }
  // Global sample ids in the loaded shards, ascending.
  std::vector<int64_t> LoadedSampleIds() const;
  Status Fill(std::span<const int64_t> indices, float* x, int32_t* y) const override;
  // Drops a loaded shard's payload from memory.
  void Unload(int shard) { loaded_[static_cast<size_t>(shard)].reset(); }

 private:
  struct Loaded {
    std::vector<float> x;
    std::vector<int32_t> y;
  };
  std::string dir_;
  std::vector<ShardHeader> headers_;
  std::vector<std::unique_ptr<Loaded>> loaded_;  // null where not loaded
};

// Verifies every shard in `dir` (headers and payload CRCs). Used by `cohort data verify`.
Status VerifyShards(const std::string& dir);

// Which global sample ids each step of training uses on one rank.
class Sampler {
 public:
  virtual ~Sampler() = default;
  // The `batch` sample ids of this rank at global step `step` (0-based).
  virtual void Indices(int64_t step, std::span<int64_t> out) = 0;
};

// Global sampling: each epoch is a seeded permutation of all samples; global
// batch t is elements [t*G, (t+1)*G) of it and rank r takes the r-th slice of
// B = G/world. So N ranks with batch B see exactly what 1 rank with batch N*B
// sees, which is what the golden test relies on. The tail that does not fill
// a global batch is dropped each epoch.
class GlobalSampler final : public Sampler {
 public:
  GlobalSampler(int64_t samples, int64_t batch_per_rank, int rank, int world, uint64_t seed);
  void Indices(int64_t step, std::span<int64_t> out) override;

 private:
  void Shuffle(int64_t epoch);
  int64_t samples_, batch_, rank_, world_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Sampling over the shards this rank owns (its own files). Each epoch the
// rank walks its shards in the order of sharding::WalkPriority(seed, epoch,
// member, shard) and each shard's samples in a seeded permutation, so over one
// epoch of its walk every sample of its shards is read exactly once. The tail
// that does not fill a batch is dropped each epoch. Ranks that own different
// numbers of samples (consistent placement is balanced only within a bound)
// run epochs of different lengths; exactly-once holds per rank walk.
class ShardWalkSampler final : public Sampler {
 public:
  struct Shard {
    int64_t index;         // shard number
    int64_t first_sample;  // global id of its first sample
    int64_t samples;
  };
  ShardWalkSampler(std::vector<Shard> owned, int64_t batch, uint64_t member_id, uint64_t seed);
  void Indices(int64_t step, std::span<int64_t> out) override;
  int64_t steps_per_epoch() const { return total_ / batch_; }
  int64_t owned_samples() const { return total_; }

 private:
  void BuildEpoch(int64_t epoch);
  std::vector<Shard> owned_;
  int64_t batch_;
  uint64_t member_id_, seed_;
  int64_t total_ = 0;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;  // this epoch's sample ids in reading order
};

}  // namespace cohort
