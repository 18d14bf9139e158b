#include "runtime/elastic/bootstrap.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/elastic/env.h"

namespace cohort::elastic {

Result<std::unique_ptr<GlooCommunicator>> BootstrapGloo(std::shared_ptr<Store> store, int rank,
                                                        int world, const GlooOptions& go,
                                                        const std::atomic<uint64_t>& latest,
                                                        uint64_t epoch) {
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;  // guarded by mu
    Result<std::unique_ptr<GlooCommunicator>> result =
        Internal("bootstrap did not finish");  // guarded by mu
  };
  auto p = std::make_shared<Pending>();
  std::thread([p, store, rank, world, go] {
    auto r = GlooCommunicator::Create(store, rank, world, go);
    std::lock_guard<std::mutex> l(p->mu);
    p->result = std::move(r);
    p->done = true;
    p->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> l(p->mu);
  while (!p->done) {
    p->cv.wait_for(l, kHeartbeatInterval);
    if (!p->done && latest.load() > epoch) {
      return Aborted("epoch " + std::to_string(epoch) +
                     " was superseded during the gloo bootstrap");
    }
  }
  return std::move(p->result);
}

}  // namespace cohort::elastic
