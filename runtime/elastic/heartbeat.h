#pragma once
// Heartbeats a member and follows the job's epoch, on its own thread and
// coordinator client; every kStepReportEveryHeartbeats heartbeats it also
// writes the last completed step (StepKey) when it moved. A heartbeat
// refused because the member was evicted (the controller's breaker opened
// while this process was hung or cut off) joins again, so the member can be
// taken back at a later epoch. Stops in the destructor.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "coordinator/client/client.h"

namespace cohort::elastic {

class Heartbeat {
 public:
  // `address`: the member's health server, for a join again. `step` (not
  // owned, outlives this): the member's last completed step.
  Heartbeat(coordinator::ClientOptions co, std::string job, std::string member, std::string address,
            const std::atomic<int64_t>* step);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // The newest epoch the job committed, as of the last heartbeat.
  const std::atomic<uint64_t>& latest_epoch() const { return latest_; }

 private:
  void Loop();

  coordinator::ClientOptions co_;
  std::string job_, member_, address_;
  const std::atomic<int64_t>* step_;
  std::atomic<uint64_t> latest_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace cohort::elastic
