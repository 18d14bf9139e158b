#pragma once
// Dynamic loss scaling for fp16 training, as torch.cuda.amp.GradScaler does
// it: backward computes the gradient of loss * scale() so that small fp16
// gradients do not flush to zero; after the gradients are synchronised the
// caller unscales them (kernels::ScaleCheckFinite with 1 / scale()) and
// reports whether any element was inf or NaN to Update(), which says whether
// to apply the optimizer step:
// - overflow: skip the step, scale *= backoff (never below the floor
//   kMinLossScale), restart the count of clean steps;
// - clean: step; after growth_interval clean steps in a row, scale *= growth
//   (never above kMaxLossScale) and restart the count.
// Every rank must call Update() with the same flag (the trainer agrees on it),
// so every rank keeps the same scale. Pure state, no I/O; not thread-safe.

#include <cstdint>

#include "runtime/config.h"

namespace cohort {

// Consecutive overflows at the floor after which the trainer gives up: the
// gradients are not finite at any scale, so the model itself diverged.
inline constexpr int64_t kMaxSkipsAtMinLossScale = 20;

class LossScaler {
 public:
  explicit LossScaler(const LossScaleConfig& config);

  // Whether to apply the optimizer step, given whether the step's unscaled
  // gradients held an inf or NaN anywhere on any rank.
  bool Update(bool found_nonfinite);

  double scale() const { return scale_; }
  // Clean steps since the scale last changed (torch's growth tracker).
  int64_t clean_steps() const { return clean_steps_; }
  int64_t skipped_steps() const { return skipped_; }
  // True after kMaxSkipsAtMinLossScale overflows in a row at the floor.
  bool stuck() const { return skips_at_floor_ >= kMaxSkipsAtMinLossScale; }

  // Restores the state a checkpoint recorded (scale clamped to the bounds,
  // clean_steps to [0, growth_interval)).
  void Restore(double scale, int64_t clean_steps);

 private:
  LossScaleConfig config_;
  double scale_;             // in [kMinLossScale, kMaxLossScale]
  int64_t clean_steps_ = 0;  // in [0, growth_interval)
  int64_t skipped_ = 0;      // this process's lifetime (not checkpointed)
  int64_t skips_at_floor_ = 0;
};

}  // namespace cohort
