#pragma once
// The Communicator: collective operations among the ranks of one group.
//
// Contract, for every backend:
// - Every rank of the group calls the same collectives in the same order with
//   the same counts, dtypes and ops (as in MPI and NCCL).
// - Counts are element counts. `send == recv` means in place. Buffers are
//   owned by the caller and must not be touched by another thread during the
//   call. CPU buffers unless a backend says otherwise.
// - A failure (a dead peer, a timeout, a transport error) returns a non-OK
//   Status; after one, the communicator may be unusable and should be rebuilt.
// - One communicator is used by one thread at a time.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"

namespace cohort {

enum class ReduceOp : uint8_t { kSum = 0, kAvg = 1, kMax = 2, kMin = 3, kProd = 4 };
std::string_view ReduceOpName(ReduceOp op);  // sum, avg, max, min, prod
Result<ReduceOp> ParseReduceOp(std::string_view name);

class Communicator {
 public:
  virtual ~Communicator() = default;

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
  virtual Status AllGather(const void* send, void* recv, size_t count, DType dtype) = 0;
  // send holds count * size() elements; rank r receives the reduction of
  // block r (its `count` elements). In place (send == recv), recv holds the
  // whole input and the result lands in its first `count` elements.
  virtual Status ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                               ReduceOp op) = 0;
  virtual Status Barrier() = 0;

  // Tensor conveniences (dtype and count from the tensor).
  Status AllReduce(Tensor& t, ReduceOp op) {
    return AllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()), t.dtype(), op);
  }
  Status Broadcast(Tensor& t, int root) {
    return Broadcast(t.raw(), static_cast<size_t>(t.numel()), t.dtype(), root);
  }
};

// Checks that every rank reached this point with an OK `local` status, in one
// collective. If any rank failed, every rank returns the first failing rank's
// error (prefixed with "rank N: "), so all ranks exit together rather than
// some waiting forever in the next collective.
Status AgreeOnStatus(Communicator& comm, const Status& local);

}  // namespace cohort
