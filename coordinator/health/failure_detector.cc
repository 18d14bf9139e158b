#include "coordinator/health/failure_detector.h"

#include <algorithm>
#include <cmath>

namespace cohort::coordinator::health {

void PhiAccrualDetector::Heartbeat(TimePoint now) {
  if (has_last_) {
    const double ms = std::chrono::duration<double, std::milli>(now - last_).count();
    intervals_.push_back(ms);
    sum_ += ms;
    sum_sq_ += ms * ms;
    if (intervals_.size() > options_.window) {
      const double old = intervals_.front();
      intervals_.pop_front();
      sum_ -= old;
      sum_sq_ -= old * old;
    }
  }
  has_last_ = true;
  last_ = now;
}

double PhiAccrualDetector::Phi(TimePoint now) const {
  if (!has_last_) return 0.0;
  const double n = static_cast<double>(intervals_.size());
  const double mean =
      n > 0 ? sum_ / n : static_cast<double>(options_.first_interval_estimate.count());
  const double var = n > 1 ? std::max(0.0, sum_sq_ / n - mean * mean) : (mean / 4) * (mean / 4);
  const double stddev = std::max(std::sqrt(var), static_cast<double>(options_.min_stddev.count()));
  const double silent = std::chrono::duration<double, std::milli>(now - last_).count();
  // P(next arrival later than `silent`) under N(mean + pause, stddev); the
  // logistic approximation of the normal tail keeps it finite and monotone.
  const double y =
      (silent - mean - static_cast<double>(options_.acceptable_pause.count())) / stddev;
  const double e = std::exp(-y * (1.5976 + 0.070566 * y * y));
  const double p_later = y > 0 ? e / (1.0 + e) : 1.0 - 1.0 / (1.0 + e);
  return -std::log10(std::max(p_later, 1e-300));
}

std::string_view BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half-open";
  }
  return "?";
}

void CircuitBreaker::Open(TimePoint now) {
  if (state_ == BreakerState::kHalfOpen) cooldown_ = std::min(cooldown_ * 2, options_.max_cooldown);
  state_ = BreakerState::kOpen;
  opened_at_ = now;
  ++opens_;
}

void CircuitBreaker::OnSuccess(TimePoint now) {
  detector_.Heartbeat(now);
  failures_ = 0;
  if (state_ == BreakerState::kHalfOpen) {
    state_ = BreakerState::kClosed;
    cooldown_ = options_.cooldown;
  }
}

void CircuitBreaker::OnFailure(TimePoint now) {
  ++failures_;
  if (state_ == BreakerState::kHalfOpen) {
    Open(now);
  } else if (state_ == BreakerState::kClosed && failures_ >= options_.failure_threshold) {
    Open(now);
  }
}

BreakerState CircuitBreaker::Update(TimePoint now) {
  if (state_ == BreakerState::kClosed && detector_.Phi(now) > options_.phi_threshold) Open(now);
  if (state_ == BreakerState::kOpen && now - opened_at_ >= cooldown_) {
    state_ = BreakerState::kHalfOpen;
    failures_ = 0;
  }
  return state_;
}

}  // namespace cohort::coordinator::health
