#pragma once
// The NCCL backend: collectives on GPU buffers.
//
// - Buffers are CUDA device pointers on this rank's device. Every call is
//   enqueued on the communicator's own stream and waited for before it
//   returns (so a call's contract is the same as on every other backend);
//   callers that overlap use the *Async forms from a communication thread.
// - Bootstrap: rank 0 creates the NCCL unique id and publishes it through a
//   rendezvous Store under `<prefix>/nccl-unique-id`; the others read it.
//   So a communicator can be rebuilt for a new membership without restarting
//   the process (the elastic agent uses a new prefix per epoch).
// - Failures do not hang: the communicator is non-blocking (NCCL config
//   blocking = 0); every wait polls ncclCommGetAsyncError and gives up at the
//   deadline with ncclCommAbort, returning DeadlineExceeded (a dead peer) or
//   Unavailable (an NCCL error). After that the communicator is unusable.
// - Not thread-safe: one thread at a time (the async queue is one thread).
//
// Compiled only when CUDA and NCCL are found (COHORT_HAVE_NCCL). Links the
// CUDA runtime, never the driver.

#include <chrono>
#include <memory>
#include <string>

#include "collectives/communicator.h"
#include "collectives/store.h"

namespace cohort {

struct NcclOptions {
  // This rank's CUDA device, in [0, devices visible); the caller chooses it
  // (runtime/device_select.h's AgreePlacement: local rank mod devices).
  int device = -1;
  std::string prefix = "nccl";                                  // Store key prefix, e.g. "epoch-7"
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};  // per operation and for bootstrap
};

class NcclCommunicator final : public Communicator {
 public:
  static Result<std::unique_ptr<NcclCommunicator>> Create(Store& store, int rank, int size,
                                                          const NcclOptions& options = {});
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "nccl"; }
  int device() const { return device_; }

  Status AllReduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) override;
  Status Broadcast(void* buf, size_t count, DType dtype, int root) override;
  Status AllGather(const void* send, void* recv, size_t count, DType dtype) override;
  Status ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                       ReduceOp op) override;
  Status Barrier() override;
  Status Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                int root) override;
  Status AllToAll(const void* send, void* recv, size_t count, DType dtype) override;
  Status Send(const void* buf, size_t count, DType dtype, int peer) override;
  Status Recv(void* buf, size_t count, DType dtype, int peer) override;
  Result<std::unique_ptr<Communicator>> SplitGroup(int color, int key) override;
  // Device memory (cudaMalloc); NCCL needs no registration to use it.
  Result<void*> AllocateRegistered(size_t bytes) override;
  Status FreeRegistered(void* ptr) override;

  // Aborts the communicator (wakes every rank's pending NCCL work with an
  // error); later calls fail. Used when another rank is known to be dead.
  void Abort();

  struct Impl;

 private:
  explicit NcclCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1, device_ = 0;
};

}  // namespace cohort
