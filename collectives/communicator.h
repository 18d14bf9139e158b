#pragma once
// The Communicator: collective operations among the ranks of one group.
//
// Contract, for every backend:
// - Every rank of the group calls the same collectives in the same order with
//   the same counts, dtypes, ops and roots (as in MPI and NCCL).
// - Counts are element counts. `send == recv` means in place. Buffers are
//   owned by the caller and must not be touched by another thread during the
//   call. CPU buffers unless a backend says otherwise.
// - A failure (a dead peer, a timeout, a transport error) returns a non-OK
//   Status; after one, the communicator may be unusable and should be rebuilt.
// - One communicator is used by one thread at a time. Asynchronous calls
//   (the *Async methods) run on the communicator's own communication thread,
//   in the order they were issued; while any handle is not complete, the
//   caller must not make blocking calls on the same communicator.
// - Reductions: sum, avg, max, min, prod for every dtype. fp16 and bf16 are
//   combined in fp32 and rounded once per element where the backend can
//   (shm); kAvg divides the sum by size() (integer division for integers).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"

namespace cohort {

enum class ReduceOp : uint8_t { kSum = 0, kAvg = 1, kMax = 2, kMin = 3, kProd = 4 };
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax,
                                             ReduceOp::kMin, ReduceOp::kProd};
std::string_view ReduceOpName(ReduceOp op);  // sum, avg, max, min, prod
Result<ReduceOp> ParseReduceOp(std::string_view name);

// Limits of the asynchronous machinery (CONTRIBUTING.md, "Limits"), named in one place.
inline constexpr size_t kMaxQueuedAsyncOps = 4096;  // Async calls beyond this fail at once
inline constexpr std::chrono::milliseconds kDefaultWaitTimeout = std::chrono::minutes(5);

// The completion handle of an asynchronous call. Shared between the caller
// and the communication thread; thread-safe.
class CommHandle {
 public:
  CommHandle() = default;
  CommHandle(const CommHandle&) = delete;
  CommHandle& operator=(const CommHandle&) = delete;

  // Blocks until the operation completes or `timeout` passes. Returns the
  // operation's status, or DeadlineExceeded when it has not completed in
  // time; in that case the operation still owns its buffers until Test()
  // returns true, and the communicator should be considered failed.
  Status Wait(std::chrono::milliseconds timeout = kDefaultWaitTimeout);
  // True once the operation has completed (successfully or not). Never blocks.
  bool Test() const;

  // Used by the communication thread: records the outcome and wakes waiters.
  void Complete(Status status);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  Status status_;      // guarded by mu_; meaningful once done_
};
using CommHandlePtr = std::shared_ptr<CommHandle>;

class Communicator {
 public:
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  // Backends must call StopAsync() first in their own destructor, so the
  // communication thread never runs a virtual call on a half-destroyed object.
  virtual ~Communicator();

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view backend() const = 0;

  // recv[i] = op over ranks of send[i], on every rank. kAvg divides the sum by
  // size() (integer division for integer types).
  virtual Status AllReduce(const void* send, void* recv, size_t count, DType dtype,
                           ReduceOp op) = 0;
  // buf on `root` is copied to buf on every other rank.
  virtual Status Broadcast(void* buf, size_t count, DType dtype, int root) = 0;
  // recv (count * size() elements) holds every rank's `count` elements, in rank order.
  // In place: send == recv + rank() * count elements.
  virtual Status AllGather(const void* send, void* recv, size_t count, DType dtype) = 0;
  // send holds count * size() elements; rank r receives the reduction of
  // block r (its `count` elements). In place (send == recv), recv holds the
  // whole input and the result lands in its first `count` elements.
  virtual Status ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                               ReduceOp op) = 0;
  virtual Status Barrier() = 0;

  // recv[i] on `root` = op over ranks of send[i]; recv is not used on other
  // ranks (may be null there). In place: send == recv on root.
  virtual Status Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                        int root) = 0;
  // send and recv hold count * size() elements: block q of send goes to rank
  // q, block q of recv comes from rank q. In place: send == recv.
  virtual Status AllToAll(const void* send, void* recv, size_t count, DType dtype) = 0;
  // Point-to-point: `count` elements to / from `peer` (!= rank()). Sends and
  // receives between one ordered pair are matched in order; a Send may block
  // until the peer posts its Recv (no unbounded buffering).
  virtual Status Send(const void* buf, size_t count, DType dtype, int peer) = 0;
  virtual Status Recv(void* buf, size_t count, DType dtype, int peer) = 0;

  // Splits into sub-communicators: ranks with the same `color` form a group,
  // ordered by (key, old rank). Collective over this communicator. The result
  // is independent of this one (it may outlive it unless the backend says
  // otherwise) and has the same backend.
  virtual Result<std::unique_ptr<Communicator>> SplitGroup(int color, int key) = 0;

  // Registered memory: `bytes` (<= kMaxRegisteredBytes) of 64-byte-aligned
  // memory owned by this communicator, valid until FreeRegistered or the
  // communicator's destruction. Backends that can (shm) place it so that a
  // collective whose buffers lie in it copies nothing. Collective on shm:
  // every rank allocates the same sizes in the same order, and uses the same
  // offsets in a call. The default keeps it on the heap.
  static constexpr size_t kMaxRegisteredBytes = size_t{64} << 30;
  virtual Result<void*> AllocateRegistered(size_t bytes);
  // Frees what AllocateRegistered returned. Collective on shm.
  virtual Status FreeRegistered(void* ptr);

  // Asynchronous twins: enqueue the operation on the communication thread
  // (started on first use) and return at once. Buffers stay owned by the
  // operation until its handle completes. Errors (including a full queue) are
  // reported through the handle.
  CommHandlePtr AllReduceAsync(const void* send, void* recv, size_t count, DType dtype,
                               ReduceOp op);
  CommHandlePtr BroadcastAsync(void* buf, size_t count, DType dtype, int root);
  CommHandlePtr AllGatherAsync(const void* send, void* recv, size_t count, DType dtype);
  CommHandlePtr ReduceScatterAsync(const void* send, void* recv, size_t count, DType dtype,
                                   ReduceOp op);
  CommHandlePtr ReduceAsync(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                            int root);
  CommHandlePtr AllToAllAsync(const void* send, void* recv, size_t count, DType dtype);
  CommHandlePtr SendAsync(const void* buf, size_t count, DType dtype, int peer);
  CommHandlePtr RecvAsync(void* buf, size_t count, DType dtype, int peer);
  CommHandlePtr BarrierAsync();
  // Any sequence of calls on this communicator, run on the communication thread.
  CommHandlePtr SubmitAsync(std::function<Status(Communicator&)> fn);

  // Tensor conveniences (dtype and count from the tensor).
  Status AllReduce(Tensor& t, ReduceOp op) {
    return AllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), t.dtype(), op);
  }
  Status Broadcast(Tensor& t, int root) {
    return Broadcast(t.raw(), static_cast<size_t>(t.numel()), t.dtype(), root);
  }

 protected:
  // Waits for queued asynchronous operations to finish and joins the
  // communication thread. Idempotent; call at the top of derived destructors.
  void StopAsync();

 private:
  void AsyncLoop();

  std::mutex async_mu_;
  std::condition_variable async_cv_;
  std::deque<std::pair<std::function<Status(Communicator&)>, CommHandlePtr>>
      async_queue_;           // guarded by async_mu_; size <= kMaxQueuedAsyncOps
  bool async_stop_ = false;   // guarded by async_mu_
  std::thread async_thread_;  // started lazily by SubmitAsync
  std::vector<std::unique_ptr<char[]>> heap_registered_;  // default AllocateRegistered
  std::vector<void*> heap_registered_aligned_;            // aligned views of the above
};

// Checks that every rank reached this point with an OK `local` status, in one
// collective. If any rank failed, every rank returns the first failing rank's
// error (prefixed with "rank N: "), so all ranks exit together rather than
// some waiting forever in the next collective.
Status AgreeOnStatus(Communicator& comm, const Status& local);

// Argument checks shared by backends (InvalidArgument with a message on error).
Status CheckRoot(int root, int size, std::string_view what);
Status CheckPeer(int peer, int rank, int size, std::string_view what);

}  // namespace cohort
