#pragma once
// Monotonic time in seconds (std::chrono::steady_clock), for measuring spans
// of work: step times, phases, timeouts. Never a date.

#include <chrono>

namespace cohort {

inline double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace cohort
