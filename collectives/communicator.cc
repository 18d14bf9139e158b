#include "collectives/communicator.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace cohort {

// ---- CommHandle -------------------------------------------------------------

Status CommHandle::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [this] { return done_; })) {
    return DeadlineExceeded("asynchronous collective not complete after " +
                            std::to_string(timeout.count()) +
                            " ms; its buffers stay in use until Test() is true");
  }
  return status_;
}

bool CommHandle::Test() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void CommHandle::Complete(Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
    done_ = true;
  }
  cv_.notify_all();
}

// ---- Communicator: asynchronous calls and default registered memory ----------

Communicator::~Communicator() { StopAsync(); }

void Communicator::StopAsync() {
  {
    std::unique_lock<std::mutex> lock(async_mu_);
    if (!async_thread_.joinable()) return;
    async_stop_ = true;
  }
  async_cv_.notify_all();
  async_thread_.join();
}

void Communicator::AsyncLoop() {
  std::unique_lock<std::mutex> lock(async_mu_);
  for (;;) {
    async_cv_.wait(lock, [this] { return async_stop_ || !async_queue_.empty(); });
    if (async_queue_.empty()) return;  // stopping, and everything queued has run
    auto [fn, handle] = std::move(async_queue_.front());
    async_queue_.pop_front();
    lock.unlock();
    Status s = fn(*this);
    handle->Complete(std::move(s));
    lock.lock();
  }
}

CommHandlePtr Communicator::SubmitAsync(std::function<Status(Communicator&)> fn) {
  auto handle = std::make_shared<CommHandle>();
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    if (async_stop_) {
      handle->Complete(FailedPrecondition("communicator is shutting down; no new async calls"));
      return handle;
    }
    if (async_queue_.size() >= kMaxQueuedAsyncOps) {
      handle->Complete(Unavailable("more than " + std::to_string(kMaxQueuedAsyncOps) +
                                   " asynchronous collectives queued; Wait() on some first"));
      return handle;
    }
    async_queue_.emplace_back(std::move(fn), handle);
    if (!async_thread_.joinable()) async_thread_ = std::thread([this] { AsyncLoop(); });
  }
  async_cv_.notify_one();
  return handle;
}

CommHandlePtr Communicator::AllReduceAsync(const void* send, void* recv, size_t count, DType dtype,
                                           ReduceOp op) {
  return SubmitAsync([=](Communicator& c) { return c.AllReduce(send, recv, count, dtype, op); });
}
CommHandlePtr Communicator::BroadcastAsync(void* buf, size_t count, DType dtype, int root) {
  return SubmitAsync([=](Communicator& c) { return c.Broadcast(buf, count, dtype, root); });
}
CommHandlePtr Communicator::AllGatherAsync(const void* send, void* recv, size_t count,
                                           DType dtype) {
  return SubmitAsync([=](Communicator& c) { return c.AllGather(send, recv, count, dtype); });
}
CommHandlePtr Communicator::ReduceScatterAsync(const void* send, void* recv, size_t count,
                                               DType dtype, ReduceOp op) {
  return SubmitAsync(
      [=](Communicator& c) { return c.ReduceScatter(send, recv, count, dtype, op); });
}
CommHandlePtr Communicator::ReduceAsync(const void* send, void* recv, size_t count, DType dtype,
                                        ReduceOp op, int root) {
  return SubmitAsync([=](Communicator& c) { return c.Reduce(send, recv, count, dtype, op, root); });
}
CommHandlePtr Communicator::AllToAllAsync(const void* send, void* recv, size_t count, DType dtype) {
  return SubmitAsync([=](Communicator& c) { return c.AllToAll(send, recv, count, dtype); });
}
CommHandlePtr Communicator::SendAsync(const void* buf, size_t count, DType dtype, int peer) {
  return SubmitAsync([=](Communicator& c) { return c.Send(buf, count, dtype, peer); });
}
CommHandlePtr Communicator::RecvAsync(void* buf, size_t count, DType dtype, int peer) {
  return SubmitAsync([=](Communicator& c) { return c.Recv(buf, count, dtype, peer); });
}
CommHandlePtr Communicator::BarrierAsync() {
  return SubmitAsync([](Communicator& c) { return c.Barrier(); });
}

Result<void*> Communicator::AllocateRegistered(size_t bytes) {
  if (bytes == 0 || bytes > kMaxRegisteredBytes) {
    return InvalidArgument("AllocateRegistered: " + std::to_string(bytes) +
                           " bytes outside [1, kMaxRegisteredBytes]");
  }
  auto block = std::make_unique<char[]>(bytes + 64);
  auto addr = reinterpret_cast<uintptr_t>(block.get());
  void* aligned = reinterpret_cast<void*>((addr + 63) & ~uintptr_t{63});
  heap_registered_.push_back(std::move(block));
  heap_registered_aligned_.push_back(aligned);
  return aligned;
}

Status Communicator::FreeRegistered(void* ptr) {
  for (size_t i = 0; i < heap_registered_aligned_.size(); ++i) {
    if (heap_registered_aligned_[i] == ptr) {
      heap_registered_aligned_.erase(heap_registered_aligned_.begin() + static_cast<long>(i));
      heap_registered_.erase(heap_registered_.begin() + static_cast<long>(i));
      return Status::Ok();
    }
  }
  return InvalidArgument("FreeRegistered: pointer was not returned by AllocateRegistered");
}

Status CheckRoot(int root, int size, std::string_view what) {
  if (root < 0 || root >= size) {
    return InvalidArgument(std::string(what) + " root " + std::to_string(root) + " outside [0, " +
                           std::to_string(size) + ")");
  }
  return Status::Ok();
}

Status CheckPeer(int peer, int rank, int size, std::string_view what) {
  if (peer < 0 || peer >= size || peer == rank) {
    return InvalidArgument(std::string(what) + " peer " + std::to_string(peer) +
                           " must be in [0, " + std::to_string(size) + ") and not this rank (" +
                           std::to_string(rank) + ")");
  }
  return Status::Ok();
}

// ---- Reductions and agreement ------------------------------------------------

std::string_view ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAvg:
      return "avg";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
    case ReduceOp::kProd:
      return "prod";
  }
  return "?";
}

Result<ReduceOp> ParseReduceOp(std::string_view name) {
  for (ReduceOp op :
       {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kProd}) {
    if (name == ReduceOpName(op)) return op;
  }
  return InvalidArgument("unknown reduction '" + std::string(name) +
                         "' (expected sum, avg, max, min or prod)");
}

Status AgreeOnStatus(Communicator& comm, const Status& local) {
  // Round 1: the lowest failing rank (or size() when none failed).
  int32_t mine = local.ok() ? comm.size() : comm.rank();
  int32_t first = 0;
  COHORT_RETURN_IF_ERROR(comm.AllReduce(&mine, &first, 1, DType::kI32, ReduceOp::kMin));
  if (first == comm.size()) return Status::Ok();
  // Round 2: that rank's code and message, fixed size so one broadcast does.
  constexpr size_t kMaxMessage = 1024;
  std::vector<char> buf(kMaxMessage + 4, 0);
  if (comm.rank() == first) {
    const int32_t code = static_cast<int32_t>(local.code());
    std::memcpy(buf.data(), &code, 4);
    const std::string& m = local.message();
    std::memcpy(buf.data() + 4, m.data(), std::min(m.size(), kMaxMessage - 1));
  }
  COHORT_RETURN_IF_ERROR(comm.Broadcast(buf.data(), buf.size() / 4, DType::kI32, first));
  int32_t code;
  std::memcpy(&code, buf.data(), 4);
  std::string message(buf.data() + 4);
  if (comm.size() == 1 || first == comm.rank()) return local;
  return Status(static_cast<StatusCode>(code), "rank " + std::to_string(first) + ": " + message);
}

}  // namespace cohort
