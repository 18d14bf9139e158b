#pragma once
// The clocks: monotonic time for measuring spans of work (step times,
// phases, timeouts), and wall-clock time for timestamps that other processes
// compare (heartbeats, leases, recovery figures).

#include <chrono>
#include <cstdint>

namespace cohort {

inline double MonotonicSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Wall-clock milliseconds since the Unix epoch (std::chrono::system_clock):
// comparable across processes on one host, and across hosts as far as their
// clocks agree.
inline int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace cohort
