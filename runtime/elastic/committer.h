#pragma once
// Checkpoints of an elastic job, committed through the coordinator.
//
// Rank 0 writes MANIFEST.json once every rank's shard is in (the Trainer's
// collective commit point), then CoordinatorCommitter proposes the
// checkpoint (epoch, step, step directory, ManifestChecksum) to the
// coordinator and commits it; both are fenced by the epoch, so a rank 0 of a
// superseded epoch is refused and its checkpoint is never used. After the
// commit the checkpoint is appended to a short history under the job's key
// CheckpointHistoryKey(job) (the registry itself holds only the last
// committed one), so a restore can fall back to an older committed
// checkpoint when the newest is damaged. A directory on disk that is in
// neither is never restored, whatever its MANIFEST.json says.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/client/client.h"
#include "coordinator/controller/job_keys.h"
#include "core/status.h"
#include "runtime/checkpoint.h"

namespace cohort::elastic {

// Committed checkpoints remembered in the history key, newest last (a bound
// on the key's size; checkpoint.keep bounds what stays on disk).
inline constexpr size_t kMaxCommittedHistory = 16;

using coordinator::CheckpointHistoryKey;

// The committed checkpoints the coordinator knows for `job` (its last
// committed one and the history), newest first, without duplicates.
Result<std::vector<CommittedCheckpoint>> ListCommittedCheckpoints(coordinator::Client& client,
                                                                  const std::string& job);

// Whether the coordinator committed the checkpoint in `step_dir`: "committed"
// (it names this directory with the checksum its MANIFEST.json has now),
// "changed" (it names the directory with another checksum: rewritten or
// damaged since) or "no". `committed` is ListCommittedCheckpoints' answer.
std::string CoordinatorVerdict(const std::vector<CommittedCheckpoint>& committed,
                               const std::string& step_dir);

// Commits through the coordinator on behalf of the rank 0 of `epoch`. Uses
// its own client (the caller's may be in use on another thread). Not
// thread-safe; the Trainer calls it from its loop only.
class CoordinatorCommitter final : public CheckpointCommitter {
 public:
  // `committed` (may be null, not owned) counts the checkpoints it commits.
  static Result<std::unique_ptr<CoordinatorCommitter>> Create(
      const coordinator::ClientOptions& options, std::string job, uint64_t epoch,
      int64_t* committed = nullptr);
  // Aborted when the coordinator refuses the epoch (superseded); false when
  // it declines the step as not newer than its last committed one.
  Result<bool> Commit(const CheckpointLayout& layout, const std::string& step_dir,
                      const std::string& checksum) override;

 private:
  CoordinatorCommitter(std::unique_ptr<coordinator::Client> client, std::string job, uint64_t epoch,
                       int64_t* committed)
      : client_(std::move(client)), job_(std::move(job)), epoch_(epoch), committed_(committed) {}
  std::unique_ptr<coordinator::Client> client_;
  std::string job_;
  uint64_t epoch_;
  int64_t* committed_;
};

}  // namespace cohort::elastic
