#include "runtime/loss_scaler.h"

#include <algorithm>

namespace cohort {

LossScaler::LossScaler(const LossScaleConfig& config)
    : config_(config), scale_(std::clamp(config.initial, kMinLossScale, kMaxLossScale)) {}

bool LossScaler::Update(bool found_nonfinite) {
  if (found_nonfinite) {
    ++skipped_;
    skips_at_floor_ = scale_ <= kMinLossScale ? skips_at_floor_ + 1 : 0;
    scale_ = std::max(kMinLossScale, scale_ * config_.backoff);
    clean_steps_ = 0;
    return false;
  }
  skips_at_floor_ = 0;
  if (++clean_steps_ >= config_.growth_interval) {
    scale_ = std::min(kMaxLossScale, scale_ * config_.growth);
    clean_steps_ = 0;
  }
  return true;
}

void LossScaler::Restore(double scale, int64_t clean_steps) {
  scale_ = std::clamp(scale, kMinLossScale, kMaxLossScale);
  clean_steps_ = std::clamp<int64_t>(clean_steps, 0, config_.growth_interval - 1);
}

}  // namespace cohort
