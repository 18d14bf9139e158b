#include "runtime/elastic/committer.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/logging.h"

namespace cohort::elastic {
namespace {

// The registry's answer that a step is not after its last committed one: a
// recovery went back and redid steps that were already committed.
bool NotNewer(const Status& s) {
  return coordinator::RefusalOf(s) == coordinator::Refusal::kCheckpointNotNewer;
}

}  // namespace

Result<std::vector<CommittedCheckpoint>> ListCommittedCheckpoints(coordinator::Client& client,
                                                                  const std::string& job) {
  std::vector<CommittedCheckpoint> out;
  COHORT_ASSIGN_OR_RETURN(auto info, client.GetJob());
  if (info.last_checkpoint) {
    out.push_back({static_cast<int64_t>(info.last_checkpoint->step), info.last_checkpoint->path,
                   info.last_checkpoint->checksum});
  }
  COHORT_ASSIGN_OR_RETURN(auto history, client.Get(CheckpointHistoryKey(job)));
  if (history) {
    nlohmann::json h = nlohmann::json::parse(*history, nullptr, false);
    if (!h.is_array()) {
      return DataLoss("coordinator key " + CheckpointHistoryKey(job) +
                      " is not a JSON list of checkpoints");
    }
    for (const auto& e : h) {
      if (!e.is_object() || !e.contains("step") || !e.contains("path") || !e.contains("checksum"))
        continue;
      out.push_back({e["step"].get<int64_t>(), e["path"].get<std::string>(),
                     e["checksum"].get<std::string>()});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step > b.step; });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const auto& a, const auto& b) {
                          return a.step == b.step && a.checksum == b.checksum;
                        }),
            out.end());
  return out;
}

std::string CoordinatorVerdict(const std::vector<CommittedCheckpoint>& committed,
                               const std::string& step_dir) {
  const std::string path = std::filesystem::absolute(step_dir).lexically_normal().string();
  auto sum = ReadManifestChecksum(step_dir);
  bool named = false;
  for (const auto& c : committed) {
    if (c.path != path) continue;
    named = true;
    if (sum.ok() && *sum == c.checksum) return "committed";
  }
  return named ? "changed" : "no";
}

Result<std::unique_ptr<CoordinatorCommitter>> CoordinatorCommitter::Create(
    const coordinator::ClientOptions& options, std::string job, uint64_t epoch,
    int64_t* committed) {
  COHORT_ASSIGN_OR_RETURN(auto client, coordinator::Client::Create(options));
  return std::unique_ptr<CoordinatorCommitter>(
      new CoordinatorCommitter(std::move(client), std::move(job), epoch, committed));
}

Result<bool> CoordinatorCommitter::Commit(const CheckpointLayout& layout,
                                          const std::string& step_dir,
                                          const std::string& checksum) {
  const uint64_t step = static_cast<uint64_t>(layout.step);
  const std::string path = std::filesystem::absolute(step_dir).lexically_normal().string();
  // A refusal for the epoch is the end of this epoch, not of the job.
  auto refused = [&](const Status& s) -> Status {
    if (s.code() == StatusCode::kFailedPrecondition) {
      return Status(StatusCode::kAborted,
                    "the coordinator refused checkpoint step " + std::to_string(step) +
                        " of epoch " + std::to_string(epoch_) + ": " + s.message(),
                    s.detail());  // keeps the Refusal
    }
    return s.WithContext("committing checkpoint " + path + " through the coordinator");
  };
  Status p = client_->ProposeCheckpoint(epoch_, step, path, checksum);
  if (NotNewer(p)) {
    COHORT_LOG_WARN("checkpoint {} not committed: {}", path, p.message());
    return false;
  }
  if (!p.ok()) return refused(p);
  Status c = client_->CommitCheckpoint(epoch_, step);
  if (NotNewer(c)) {
    COHORT_LOG_WARN("checkpoint {} not committed: {}", path, c.message());
    return false;
  }
  if (!c.ok()) return refused(c);
  if (committed_ != nullptr) ++*committed_;
  // Committed. Remember it in the history (best effort: the registry's last
  // committed checkpoint already names it).
  const std::string key = CheckpointHistoryKey(job_);
  nlohmann::json h = nlohmann::json::array();
  auto old = client_->Get(key);
  if (old.ok() && *old) {
    h = nlohmann::json::parse(**old, nullptr, false);
    if (!h.is_array()) h = nlohmann::json::array();
  }
  h.push_back({{"epoch", epoch_}, {"step", step}, {"path", path}, {"checksum", checksum}});
  while (h.size() > kMaxCommittedHistory) h.erase(h.begin());
  auto put = client_->Put(key, h.dump());
  if (!put.ok()) COHORT_LOG_WARN("checkpoint history not updated: {}", put.status().message());
  return true;
}

}  // namespace cohort::elastic
