#pragma once
// Checkpoints: every rank writes its own shard, rank 0 commits a manifest.
//
// Layout of a checkpoint directory:
//   DIR/step-000000120/rank-00003.safetensors   one shard per rank
//   DIR/step-000000120/MANIFEST.json            the commit: present only when
//                                               every shard was written
// A shard holds what its rank alone knows, in safetensors (PyTorch tools
// open it): "param" (the rank's tensor-parallel part of the parameters, flat;
// written by data rank 0 of each tensor group only, since data ranks hold
// copies) and "optim.<name>" (optimizer state: the whole tensor part under
// ZeRO 0, written by data rank 0; this rank's partition under ZeRO 1). The
// data position and every random stream are pure functions of (seed, step),
// so the step number restores them. Each shard is written atomically (temp
// file, fsync, rename) and carries a CRC32C of its data; the manifest records
// each shard's size and CRC32C of its bytes.
//
// Only committed checkpoints are restored. A restore reassembles the whole
// model and optimizer state and re-splits them for the current layout, so a
// checkpoint from one world size, tensor split or ZeRO stage restores onto
// another. A damaged or missing shard makes that checkpoint unusable and the
// previous committed one is tried.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "runtime/config.h"

namespace cohort {

inline constexpr char kCheckpointFormat[] = "cohort.checkpoint.v1";

// What a checkpoint says about the job that wrote it.
struct CheckpointLayout {
  int64_t step = 0;
  int world_size = 1, tensor = 1, data = 1, zero = 0;
  ModelConfig model;      // the architecture (MANIFEST "layers" for an mlp, "model" for a gpt)
  std::string optimizer;  // "sgd" or "adamw"
  int64_t optimizer_steps = 0;
  std::string config_hash;
  std::string config_yaml;  // the run's config (empty in checkpoints from before it was kept)
};

// One rank's shard, ready to write: tensors plus where they belong.
struct CheckpointShard {
  int rank = 0, tensor_rank = 0, data_rank = 0;
  std::vector<std::pair<std::string, Tensor>> tensors;  // owned copies
  int64_t optim_offset = 0;  // ZeRO 1: first element of the partition within the tensor part
  // Extra "__metadata__" entries (the fp16 loss scaler's state); they must
  // not reuse the names the writer sets (format, step, rank, ...).
  std::map<std::string, std::string> metadata;
};

std::string CheckpointStepDir(const std::string& dir, int64_t step);
std::string CheckpointShardName(int rank);

// What writing one shard produced.
struct ShardWritten {
  int64_t bytes = 0;
  uint32_t crc32c = 0;  // of the whole file
  double write_ms = 0;  // on the writer thread: serialise, write, fsync, rename, read back
};

// Writes shards on a background thread so training does not wait for the
// disk. One write in flight at a time. Thread-safe for one caller thread.
class CheckpointWriter {
 public:
  CheckpointWriter();
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Queues `shard` for DIR/step-N/rank-R.safetensors and returns at once.
  // The previous write must have been collected with Wait().
  void Submit(const std::string& dir, const CheckpointLayout& layout, CheckpointShard shard);
  // Waits for the write in flight and returns what it wrote (or why not).
  // FailedPrecondition when nothing was submitted.
  Result<ShardWritten> Wait();
  bool pending() const { return submitted_; }

 private:
  void Loop();
  bool submitted_ = false;  // caller thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool has_job_ = false, done_ = false, stop_ = false;  // guarded by mu_
  std::function<Result<ShardWritten>()> job_;           // guarded by mu_
  std::optional<Result<ShardWritten>> result_;          // guarded by mu_
  std::thread worker_;
};

// The checksum that names one checkpoint's content: CRC32C of its
// MANIFEST.json bytes (which hold every shard's size and CRC32C), as
// "crc32c:xxxxxxxx".
std::string ManifestChecksum(const std::string& manifest_bytes);
// ManifestChecksum of STEP_DIR/MANIFEST.json; NotFound when it has none.
Result<std::string> ReadManifestChecksum(const std::string& step_dir);

// Who else must agree before a checkpoint counts as committed. Without one
// (mpirun jobs), MANIFEST.json is the commit. An elastic job passes one that
// commits the manifest through the coordinator (runtime/elastic/committer.h),
// so that only what the coordinator committed is ever restored.
class CheckpointCommitter {
 public:
  virtual ~CheckpointCommitter() = default;
  // Called on rank 0 once `step_dir`/MANIFEST.json is durable; `checksum` is
  // its ManifestChecksum. true: committed. false: declined without harm (e.g.
  // not newer than the last committed one after a recovery redid steps): the
  // checkpoint is not used. An error (Aborted for a superseded epoch) stops
  // the training loop. Declined or failed, the MANIFEST.json is removed so
  // the directory reads as uncommitted.
  virtual Result<bool> Commit(const CheckpointLayout& layout, const std::string& step_dir,
                              const std::string& checksum) = 0;
};

// Rank 0, after every rank reported its shard (`shards[r]` for rank r):
// checks each file is there with the reported size, writes MANIFEST.json
// atomically, has `committer` (may be null) commit it, then deletes all but
// the newest `keep` committed checkpoints and any uncommitted ones older than
// this one. Returns whether the checkpoint was committed.
Result<bool> CommitCheckpoint(const std::string& dir, const CheckpointLayout& layout,
                              const std::vector<ShardWritten>& shards, int keep,
                              CheckpointCommitter* committer = nullptr);

struct CheckpointInfo {
  int64_t step = 0;
  std::string path;
  bool committed = false;
  CheckpointLayout layout;  // when committed
  int64_t bytes = 0;
};
// Every step-* directory in `dir`, oldest first.
Result<std::vector<CheckpointInfo>> ListCheckpoints(const std::string& dir);

// A committed checkpoint read back whole: parameters and each optimizer state
// tensor in the unsplit model's flat layout.
struct LoadedCheckpoint {
  CheckpointLayout layout;
  std::vector<float> params;
  std::map<std::string, std::vector<float>> optim;
  // Rank 0's shard metadata, including any CheckpointShard::metadata entries
  // (optional: checkpoints from older builds lack them).
  std::map<std::string, std::string> metadata;
};
// Reads and verifies one committed checkpoint (manifest, every shard's size
// and CRC, every tensor's presence). DataLoss names the damaged file.
Result<LoadedCheckpoint> LoadCheckpoint(const std::string& step_dir);
// The newest committed checkpoint in `dir` that loads; damaged ones are
// skipped with a line on `warnings`. NotFound when there is none.
Result<LoadedCheckpoint> LoadLatestCheckpoint(const std::string& dir,
                                              std::vector<std::string>* warnings);

// A checkpoint some authority (the coordinator) committed: where it is and
// the ManifestChecksum it committed.
struct CommittedCheckpoint {
  int64_t step = 0;
  std::string path;  // the step directory
  std::string checksum;
};
// The newest of `committed` that loads and whose MANIFEST.json still has the
// committed checksum; others are skipped with a line on `warnings`.
// Directories on disk that `committed` does not name are never read.
// NotFound when none loads.
Result<LoadedCheckpoint> LoadNewestCommitted(std::vector<CommittedCheckpoint> committed,
                                             std::vector<std::string>* warnings);

}  // namespace cohort
