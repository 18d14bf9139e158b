#pragma once
// The Store an epoch's communicator bootstraps through: the coordinator's
// store under the epoch's prefix, which gives up waiting once the job has
// moved past that epoch. A peer that went on to a newer epoch will never
// publish its address here, so waiting the whole timeout for it would only
// delay the next epoch.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "collectives/store.h"

namespace cohort::elastic {

class EpochStore final : public Store {
 public:
  // `latest` (not owned, outlives the store): the newest epoch the job has
  // committed, as the heartbeat follows it.
  EpochStore(std::shared_ptr<Store> base, const std::atomic<uint64_t>* latest, uint64_t epoch)
      : base_(std::move(base)), latest_(latest), epoch_(epoch) {}
  Status Set(std::string_view key, std::string_view value) override {
    return base_->Set(key, value);
  }
  // As the base's Get, in slices of at most 200 ms; Aborted once the job's
  // epoch is past this one.
  Result<std::string> Get(std::string_view key, std::chrono::milliseconds timeout) override;
  Result<int64_t> Add(std::string_view key, int64_t delta) override {
    return base_->Add(key, delta);
  }
  Result<bool> Check(std::string_view key) override { return base_->Check(key); }

 private:
  std::shared_ptr<Store> base_;
  const std::atomic<uint64_t>* latest_;
  const uint64_t epoch_;
};

}  // namespace cohort::elastic
