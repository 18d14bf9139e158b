#pragma once
// The collectives' rendezvous Store (collectives/store.h) over the
// coordinator: ranks of a Gloo (or NCCL-id) bootstrap in different processes
// or hosts meet through the Raft-replicated key-value space, under a prefix
// (e.g. "job/epoch-7/gloo"), so one coordinator serves many groups and
// epochs.
//
// - Set is a put; Check a linearizable get; Add the server-side counter add.
// - Get(key, timeout) is a server-side watch (no polling): it returns at once
//   when the key exists, else when it is set, else DeadlineExceeded at the
//   timeout. Wait (Store's default) is one Get per key.
// - Values are limited by the coordinator (coordinator::raft::limits::kMaxValueBytes,
//   64 KiB), below the Store contract's 1 MiB: a larger Set is
//   InvalidArgument. Rendezvous addresses and NCCL ids are far smaller.
//
// Thread-safe: a coordinator::Client allows one request at a time, so each call borrows a
// client from a small pool (a new one when all are busy; at most
// kMaxIdleClients are kept), so a thread blocked in Get does not
// hold up a Set from another rank.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/store.h"
#include "coordinator/client/client.h"

namespace cohort::elastic {

class CoordinatorStore final : public Store {
 public:
  // Clients kept for concurrent callers (one per waiting thread).
  static constexpr size_t kMaxIdleClients = 16;

  // `prefix` non-empty; keys are stored as "<prefix>/<key>". InvalidArgument
  // for bad client options.
  static Result<std::shared_ptr<CoordinatorStore>> Create(coordinator::ClientOptions options,
                                                          std::string prefix);

  Status Set(std::string_view key, std::string_view value) override;
  Result<std::string> Get(std::string_view key, std::chrono::milliseconds timeout) override;
  Result<int64_t> Add(std::string_view key, int64_t delta) override;
  Result<bool> Check(std::string_view key) override;

  const std::string& prefix() const { return prefix_; }

 private:
  CoordinatorStore(coordinator::ClientOptions options, std::string prefix)
      : options_(std::move(options)), prefix_(std::move(prefix)) {}
  // A client for one call; returned to the pool by the deleter.
  Result<std::unique_ptr<coordinator::Client>> Borrow();
  void Return(std::unique_ptr<coordinator::Client> c);
  std::string Full(std::string_view key) const { return prefix_ + "/" + std::string(key); }

  const coordinator::ClientOptions options_;
  const std::string prefix_;
  std::mutex mu_;
  std::vector<std::unique_ptr<coordinator::Client>>
      idle_;  // guarded by mu_; at most kMaxIdleClients
};

}  // namespace cohort::elastic
