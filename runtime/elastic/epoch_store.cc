#include "runtime/elastic/epoch_store.h"

#include <algorithm>
#include <string>

namespace cohort::elastic {

using Ms = std::chrono::milliseconds;

Result<std::string> EpochStore::Get(std::string_view key, Ms timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now());
    auto r = base_->Get(key, std::clamp(left, Ms(1), Ms(200)));
    if (r.ok() || r.status().code() != StatusCode::kDeadlineExceeded) return r;
    if (latest_->load() > epoch_) {
      return Aborted("epoch " + std::to_string(epoch_) + " was superseded during bootstrap");
    }
    if (left <= Ms(200)) return r;
  }
}

}  // namespace cohort::elastic
