#include "runtime/elastic/heartbeat.h"

#include "core/logging.h"
#include "runtime/elastic/env.h"

namespace cohort::elastic {

Heartbeat::Heartbeat(coordinator::ClientOptions co, std::string job, std::string member,
                     std::string address, const std::atomic<int64_t>* step)
    : co_(std::move(co)),
      job_(std::move(job)),
      member_(std::move(member)),
      address_(std::move(address)),
      step_(step) {
  thread_ = std::thread([this] { Loop(); });
}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Heartbeat::Loop() {
  auto client = coordinator::Client::Create(co_);
  if (!client.ok()) return;
  std::unique_lock<std::mutex> l(mu_);
  int64_t reported = -1;
  for (uint64_t beat = 0; !stop_; ++beat) {
    l.unlock();
    auto job = (*client)->GetJob();
    if (job.ok()) {
      latest_.store(job->epoch);
      Status hb = (*client)->Heartbeat(member_, job->epoch);
      if (coordinator::RefusalOf(hb) == coordinator::Refusal::kMustJoinAgain) {
        COHORT_LOG_WARN("member {}: {}; joining again", member_, hb.message());
        (void)(*client)->Join(member_, address_, job->epoch);
      }
    }
    const int64_t step = step_->load();
    if (beat % kStepReportEveryHeartbeats == 0 && step != reported &&
        (*client)->Put(StepKey(job_, member_), std::to_string(step)).ok()) {
      reported = step;
    }
    l.lock();
    cv_.wait_for(l, kHeartbeatInterval, [this] { return stop_; });
  }
}

}  // namespace cohort::elastic
