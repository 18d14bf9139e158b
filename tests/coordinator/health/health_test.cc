#include <gtest/gtest.h>

#include <random>

#include "coordinator/health/failure_detector.h"

namespace cohort::coordinator::health {
namespace {

TimePoint T(int64_t ms) { return TimePoint{} + Millis(ms); }

TEST(PhiAccrual, GrowsWithSilenceAndStaysLowOnSchedule) {
  PhiAccrualDetector d;
  EXPECT_EQ(d.Phi(T(0)), 0.0);
  std::mt19937 rng(1);
  std::normal_distribution<double> jitter(0, 10);
  int64_t t = 0;
  for (int i = 0; i < 50; ++i) {
    t += 100 + static_cast<int64_t>(jitter(rng));
    d.Heartbeat(T(t));
  }
  EXPECT_LT(d.Phi(T(t + 100)), 1.0) << "on schedule";
  double prev = 0;
  for (int64_t silent : {150, 200, 300, 500, 1000}) {
    const double phi = d.Phi(T(t + silent));
    EXPECT_GT(phi, prev) << "monotone in silence";
    prev = phi;
  }
  EXPECT_GT(d.Phi(T(t + 300)), 8.0) << "a 100 ms sender silent for 300 ms is suspect";
}

TEST(PhiAccrual, WindowIsBounded) {
  PhiAccrualDetector::Options o;
  o.window = 10;
  PhiAccrualDetector d(o);
  for (int i = 0; i < 100; ++i) d.Heartbeat(T(i * 100));
  EXPECT_EQ(d.samples(), 10u);
  // The old slow rhythm is forgotten: after fast beats, a short silence is suspect.
  for (int i = 0; i < 10; ++i) d.Heartbeat(T(10000 + i * 10));
  EXPECT_GT(d.Phi(T(10090 + 200)), 8.0);
}

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresThenHalfOpensThenCloses) {
  CircuitBreaker::Options o;
  o.failure_threshold = 3;
  o.cooldown = Millis(1000);
  o.phi_threshold = 1e9;  // only failures count here
  CircuitBreaker b(o);
  b.OnSuccess(T(0));
  b.OnFailure(T(100));
  b.OnFailure(T(200));
  EXPECT_EQ(b.Update(T(200)), BreakerState::kClosed);
  b.OnSuccess(T(250));  // a success resets the count
  b.OnFailure(T(300));
  b.OnFailure(T(400));
  EXPECT_EQ(b.Update(T(400)), BreakerState::kClosed);
  b.OnFailure(T(500));
  EXPECT_EQ(b.Update(T(500)), BreakerState::kOpen);
  EXPECT_FALSE(b.ShouldProbe());
  EXPECT_EQ(b.Update(T(1499)), BreakerState::kOpen);
  EXPECT_EQ(b.Update(T(1500)), BreakerState::kHalfOpen);
  EXPECT_TRUE(b.ShouldProbe());
  b.OnSuccess(T(1600));
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  EXPECT_EQ(b.opens(), 1);
}

TEST(CircuitBreaker, CooldownDoublesOnEachReopenAndResetsOnClose) {
  CircuitBreaker::Options o;
  o.failure_threshold = 1;
  o.cooldown = Millis(100);
  o.max_cooldown = Millis(350);
  o.phi_threshold = 1e9;
  CircuitBreaker b(o);
  b.OnFailure(T(0));
  ASSERT_EQ(b.Update(T(0)), BreakerState::kOpen);
  int64_t t = 0;
  for (int64_t expect : {100, 200, 350, 350}) {  // doubles, capped
    EXPECT_EQ(b.current_cooldown(), Millis(expect == 100 ? 100 : expect));
    t += b.current_cooldown().count();
    ASSERT_EQ(b.Update(T(t)), BreakerState::kHalfOpen);
    b.OnFailure(T(t));  // still dead: re-open with a longer cool-down
    ASSERT_EQ(b.state(), BreakerState::kOpen);
  }
  t += b.current_cooldown().count();
  b.Update(T(t));
  b.OnSuccess(T(t));
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  EXPECT_EQ(b.current_cooldown(), Millis(100));
}

TEST(CircuitBreaker, PhiOpensASilentWorkerWithoutFailedProbes) {
  CircuitBreaker::Options o;
  o.phi_threshold = 8;
  CircuitBreaker b(o);
  for (int i = 0; i <= 20; ++i) b.OnSuccess(T(i * 100));
  EXPECT_EQ(b.Update(T(2000 + 120)), BreakerState::kClosed);
  EXPECT_EQ(b.Update(T(2000 + 1000)), BreakerState::kOpen);
}

TEST(CircuitBreaker, LoadedButAliveWorkerIsNotEvicted) {
  // Heartbeats every 100 ms with heavy jitter (a loaded CPU): over 10,000
  // beats the defaults never open the breaker.
  CircuitBreaker b;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> jitter(-40, 120);
  int64_t t = 0;
  for (int i = 0; i < 10000; ++i) {
    const int64_t next = t + 100 + jitter(rng);
    for (int64_t probe = t + 50; probe < next; probe += 50)
      ASSERT_EQ(b.Update(T(probe)), BreakerState::kClosed) << i;
    t = next;
    b.OnSuccess(T(t));
  }
}

}  // namespace
}  // namespace cohort::coordinator::health
