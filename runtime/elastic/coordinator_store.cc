#include "runtime/elastic/coordinator_store.h"

#include <algorithm>

namespace cohort::elastic {

using coordinator::PutResult;
using coordinator::WatchEvent;
using coordinator::WatchResult;

using Clock = std::chrono::steady_clock;

Result<std::shared_ptr<CoordinatorStore>> CoordinatorStore::Create(
    coordinator::ClientOptions options, std::string prefix) {
  if (prefix.empty()) return InvalidArgument("CoordinatorStore: empty prefix");
  options.client_id = 0;  // every pooled client draws its own id
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Client> first,
                          coordinator::Client::Create(options));
  auto store = std::shared_ptr<CoordinatorStore>(
      new CoordinatorStore(std::move(options), std::move(prefix)));
  store->Return(std::move(first));
  return store;
}

Result<std::unique_ptr<coordinator::Client>> CoordinatorStore::Borrow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      std::unique_ptr<coordinator::Client> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  return coordinator::Client::Create(options_);
}

void CoordinatorStore::Return(std::unique_ptr<coordinator::Client> c) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < kMaxIdleClients) idle_.push_back(std::move(c));
}

Status CoordinatorStore::Set(std::string_view key, std::string_view value) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, value.size()));
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Client> c, Borrow());
  Result<PutResult> r = c->Put(Full(key), std::string(value));
  Return(std::move(c));
  return r.status();
}

Result<std::string> CoordinatorStore::Get(std::string_view key, std::chrono::milliseconds timeout) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0, timeout));
  const std::string full = Full(key);
  const Clock::time_point deadline = Clock::now() + timeout;
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Client> c, Borrow());
  uint64_t after = 0;  // 0: the first watch answers at once when the key exists
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    left = std::max(left, std::chrono::milliseconds(0));
    Result<WatchResult> w = c->Watch(full, /*prefix=*/false, after, left);
    if (!w.ok()) {
      Return(std::move(c));
      return w.status().WithContext("store get '" + full + "'");
    }
    for (const WatchEvent& e : w->events) {
      if (e.key == full && !e.deleted) {
        Return(std::move(c));
        return e.value;
      }
      after = std::max(after, e.mod_revision);  // deleted: wait for the next set
    }
    if (w->events.empty()) after = std::max(after, w->revision);
    if (Clock::now() >= deadline) {
      Return(std::move(c));
      return DeadlineExceeded("store key '" + full + "' was not set within " +
                              std::to_string(timeout.count()) + " ms");
    }
  }
}

Result<int64_t> CoordinatorStore::Add(std::string_view key, int64_t delta) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0));
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Client> c, Borrow());
  Result<int64_t> r = c->Add(Full(key), delta);
  Return(std::move(c));
  return r;
}

Result<bool> CoordinatorStore::Check(std::string_view key) {
  COHORT_RETURN_IF_ERROR(CheckStoreArgs(key, 0));
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Client> c, Borrow());
  Result<std::optional<std::string>> r = c->Get(Full(key));
  Return(std::move(c));
  if (!r.ok()) return r.status();
  return r->has_value();
}

}  // namespace cohort::elastic
