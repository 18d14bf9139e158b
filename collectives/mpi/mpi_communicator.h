#pragma once
// The MPI backend (Open MPI). Works on CPU buffers; Open MPI here is not
// CUDA-aware. fp16 and bf16 are reduced through user-defined MPI ops that
// accumulate in fp32 per element.
//
// MPI itself is initialised once per process by `MpiRuntime` (with
// MPI_THREAD_MULTIPLE so a communication thread may call in later) and
// finalised when it is destroyed. Registered memory is plain heap memory
// (Open MPI's vader transport needs nothing more). Asynchronous calls run on
// the base class's communication thread (MPI_THREAD_MULTIPLE). Errors come back as Status (the
// communicator's error handler is MPI_ERRORS_RETURN).

#include <mpi.h>

#include <memory>

#include "collectives/communicator.h"

namespace cohort {

class MpiRuntime {
 public:
  // Initialises MPI if it is not already; safe to call more than once.
  static Status Init(int* argc, char*** argv);
  // Finalises MPI if this process initialised it. Call before exit on every rank.
  static void Finalize();
  // True when started by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE).
  static bool LaunchedByMpirun();
};

class MpiCommunicator final : public Communicator {
 public:
  // A communicator over a duplicate of MPI_COMM_WORLD. MpiRuntime::Init first.
  static Result<std::unique_ptr<MpiCommunicator>> World();
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "mpi"; }

  Status AllReduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) override;
  Status Broadcast(void* buf, size_t count, DType dtype, int root) override;
  Status AllGather(const void* send, void* recv, size_t count, DType dtype) override;
  Status ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                       ReduceOp op) override;
  Status Barrier() override;
  Status Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                int root) override;
  Status AllToAll(const void* send, void* recv, size_t count, DType dtype) override;
  // Tag 0 on this communicator's private MPI context; matched in order per pair.
  Status Send(const void* buf, size_t count, DType dtype, int peer) override;
  Status Recv(void* buf, size_t count, DType dtype, int peer) override;
  Result<std::unique_ptr<Communicator>> SplitGroup(int color, int key) override;

  // Splits into sub-communicators by color, ordered by key (MPI_Comm_split).
  Result<std::unique_ptr<MpiCommunicator>> Split(int color, int key) const;

  MPI_Comm comm() const { return comm_; }

 private:
  explicit MpiCommunicator(MPI_Comm comm);
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace cohort
