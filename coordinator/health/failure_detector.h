#pragma once
// Failure detection for workers: a phi-accrual suspicion level over heartbeat
// arrivals (Hayashibara et al., "The phi accrual failure detector", 2004) and
// a circuit breaker per worker that turns probe results and suspicion into a
// decision the coordinator acts on.
//
// Everything takes the current time as an argument (no clock inside), so the
// same sequence of events gives the same decisions in tests and simulation.
// Not thread-safe; the coordinator's health loop owns each instance.

#include <chrono>
#include <cstdint>
#include <deque>
#include <string_view>

namespace cohort::coordinator::health {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Millis = std::chrono::milliseconds;

// Suspicion that a process whose heartbeats arrived at the recorded times has
// failed, given how long it has been silent. phi = -log10(P(a heartbeat comes
// later than now)), with inter-arrival times modelled as a normal
// distribution over a sliding window. phi 1 ~ 10% chance of a false alarm,
// phi 8 ~ 1e-8.
class PhiAccrualDetector {
 public:
  struct Options {
    size_t window = 100;         // inter-arrival samples kept (bounded)
    Millis min_stddev{20};       // floor, so a very regular sender is not judged too harshly
    Millis acceptable_pause{0};  // added to the mean: tolerated extra silence
    Millis first_interval_estimate{500};  // assumed interval before two heartbeats arrived
  };
  PhiAccrualDetector() : PhiAccrualDetector(Options{}) {}
  explicit PhiAccrualDetector(Options options) : options_(options) {}

  void Heartbeat(TimePoint now);
  // Suspicion at `now`; 0 before the first heartbeat.
  double Phi(TimePoint now) const;
  size_t samples() const { return intervals_.size(); }

 private:
  Options options_;
  std::deque<double> intervals_;  // ms, at most options_.window
  double sum_ = 0, sum_sq_ = 0;
  bool has_last_ = false;
  TimePoint last_{};
};

enum class BreakerState : uint8_t { kClosed, kOpen, kHalfOpen };
std::string_view BreakerStateName(BreakerState s);

// One worker's circuit breaker.
//   closed    -> open       after `failure_threshold` consecutive failed
//                           probes, or when phi exceeds `phi_threshold`
//   open      -> half-open  once the cool-down has passed (probes resume)
//   half-open -> closed     on a successful probe (the worker may rejoin)
//   half-open -> open       on a failure; each re-open doubles the cool-down
//                           (up to `max_cooldown`); closing resets it.
class CircuitBreaker {
 public:
  struct Options {
    int failure_threshold = 3;
    double phi_threshold = 8.0;
    Millis cooldown{1000};
    Millis max_cooldown{60000};
    PhiAccrualDetector::Options detector;
  };
  CircuitBreaker() : CircuitBreaker(Options{}) {}
  explicit CircuitBreaker(Options options)
      : options_(options), detector_(options.detector), cooldown_(options.cooldown) {}

  // A probe or heartbeat answered / failed at `now`.
  void OnSuccess(TimePoint now);
  void OnFailure(TimePoint now);
  // Re-evaluates time-based transitions (phi, cool-down) at `now`; returns the state.
  BreakerState Update(TimePoint now);

  BreakerState state() const { return state_; }
  // Whether the worker should be probed now (closed or half-open).
  bool ShouldProbe() const { return state_ != BreakerState::kOpen; }
  double phi(TimePoint now) const { return detector_.Phi(now); }
  int consecutive_failures() const { return failures_; }
  Millis current_cooldown() const { return cooldown_; }
  int64_t opens() const { return opens_; }

 private:
  void Open(TimePoint now);
  Options options_;
  PhiAccrualDetector detector_;
  BreakerState state_ = BreakerState::kClosed;
  int failures_ = 0;
  Millis cooldown_;
  TimePoint opened_at_{};
  int64_t opens_ = 0;
};

}  // namespace cohort::coordinator::health
