#pragma once
// The communicator of one epoch: GlooCommunicator::Create on a helper
// thread, abandoned when the job moves past the epoch meanwhile. Gloo's
// connect to a peer that died during the bootstrap was seen to block 25 s
// (its own retries), far past the collective timeout, and cannot be
// interrupted. An abandoned bootstrap ends by itself (it fails once the dead
// peer's connect times out) and frees what it built on its thread.

#include <atomic>
#include <cstdint>
#include <memory>

#include "collectives/gloo/gloo_communicator.h"

namespace cohort::elastic {

// Aborted when `latest` passes `epoch` before the bootstrap finished.
Result<std::unique_ptr<GlooCommunicator>> BootstrapGloo(std::shared_ptr<Store> store, int rank,
                                                        int world, const GlooOptions& go,
                                                        const std::atomic<uint64_t>& latest,
                                                        uint64_t epoch);

}  // namespace cohort::elastic
