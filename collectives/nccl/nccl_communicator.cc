#include "collectives/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#include "core/cuda_device.h"

namespace cohort {
namespace {

using Clock = std::chrono::steady_clock;

Status FromCuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Unavailable(std::string(what) + " failed: " + cudaGetErrorString(e));
}

ncclDataType_t ToNccl(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF64:
      return ncclFloat64;
    case DType::kF16:
      return ncclFloat16;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t ToNccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kProd:
      return ncclProd;
  }
  return ncclSum;
}

ncclConfig_t NonBlockingConfig() {
  ncclConfig_t c = NCCL_CONFIG_INITIALIZER;
  c.blocking = 0;
  return c;
}

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::chrono::milliseconds timeout{60000};
  void* scratch = nullptr;  // 8 bytes of device memory for Barrier
  bool aborted = false;

  // Waits until NCCL finished initiating the last call (non-blocking
  // communicators may return ncclInProgress), polling for async errors.
  Status WaitIssued(ncclResult_t r, const char* what) {
    const auto deadline = Clock::now() + timeout;
    while (r == ncclInProgress) {
      if (Clock::now() > deadline) return TimedOut(what);
      std::this_thread::yield();
      ncclCommGetAsyncError(comm, &r);
    }
    return FromNccl(r, what);
  }

  // Waits for the stream, polling NCCL's async error; aborts at the deadline.
  Status WaitDone(const char* what) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      const cudaError_t q = cudaStreamQuery(stream);
      if (q == cudaSuccess) return Status::Ok();
      if (q != cudaErrorNotReady) return FromCuda(q, what);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        Abort();
        return FromNccl(async, what);
      }
      if (Clock::now() > deadline) return TimedOut(what);
      std::this_thread::yield();
    }
  }

  Status TimedOut(const char* what) {
    Abort();
    return DeadlineExceeded(std::string("NCCL ") + what + " did not finish within " +
                            std::to_string(timeout.count()) +
                            " ms (a peer is dead or stuck); the communicator "
                            "was aborted and must be rebuilt");
  }

  Status FromNccl(ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return Status::Ok();
    return Unavailable(
        std::string("NCCL ") + what + " failed: " + ncclGetErrorString(r) +
        (r == ncclRemoteError || r == ncclSystemError ? " (a peer or the network failed)" : ""));
  }

  void Abort() {
    if (!aborted && comm) ncclCommAbort(comm);
    aborted = true;
  }

  Status Usable() const {
    if (aborted)
      return FailedPrecondition("NCCL communicator was aborted after an error; rebuild it");
    return Status::Ok();
  }

  // Issues one NCCL call and waits for it to complete.
  template <typename Fn>
  Status Run(const char* what, Fn&& issue) {
    COHORT_RETURN_IF_ERROR(Usable());
    COHORT_RETURN_IF_ERROR(WaitIssued(issue(), what));
    return WaitDone(what);
  }
};

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Store& store, int rank, int size,
                                                                   const NcclOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) {
    return InvalidArgument("NCCL: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                           " is out of range");
  }
  std::string why_not;
  const int devices = CudaRuntimeDeviceCount(&why_not);
  if (devices == 0) return Unavailable("NCCL backend: no CUDA device (" + why_not + ")");
  const int device = options.device;
  if (device < 0 || device >= devices) {
    return InvalidArgument("NCCL backend: CUDA device " + std::to_string(device) +
                           " is not one of the " + std::to_string(devices) +
                           " visible (NcclOptions::device must be chosen by the caller)");
  }
  COHORT_RETURN_IF_ERROR(FromCuda(cudaSetDevice(device), "cudaSetDevice"));

  // The unique id travels through the Store.
  const std::string key = options.prefix + "/nccl-unique-id";
  ncclUniqueId id;
  if (rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      return Unavailable(std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(r));
    COHORT_RETURN_IF_ERROR(store.Set(key, std::string_view(id.internal, sizeof(id.internal))));
  } else {
    COHORT_ASSIGN_OR_RETURN(std::string bytes, store.Get(key, options.timeout));
    if (bytes.size() != sizeof(id.internal))
      return DataLoss("NCCL unique id under " + key + " has the wrong size");
    std::memcpy(id.internal, bytes.data(), sizeof(id.internal));
  }

  auto impl = std::make_unique<Impl>();
  impl->timeout = options.timeout;
  COHORT_RETURN_IF_ERROR(FromCuda(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking),
                                  "cudaStreamCreate"));
  COHORT_RETURN_IF_ERROR(FromCuda(cudaMalloc(&impl->scratch, 8), "cudaMalloc"));
  ncclConfig_t config = NonBlockingConfig();
  ncclResult_t r = ncclCommInitRankConfig(&impl->comm, size, id, rank, &config);
  COHORT_RETURN_IF_ERROR(impl->WaitIssued(r, "ncclCommInitRankConfig")
                             .WithContext("NCCL bootstrap of rank " + std::to_string(rank) +
                                          " of " + std::to_string(size)));
  auto out = std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl)));
  out->rank_ = rank;
  out->size_ = size;
  out->device_ = device;
  return out;
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclCommunicator::~NcclCommunicator() {
  StopAsync();
  if (impl_->comm) {
    if (impl_->aborted) {
      // ncclCommAbort already released it.
    } else {
      ncclCommFinalize(impl_->comm);
      ncclResult_t r = ncclInProgress;
      const auto deadline = Clock::now() + impl_->timeout;
      while (r == ncclInProgress && Clock::now() < deadline) ncclCommGetAsyncError(impl_->comm, &r);
      if (r == ncclSuccess)
        ncclCommDestroy(impl_->comm);
      else
        ncclCommAbort(impl_->comm);
    }
  }
  if (impl_->scratch) cudaFree(impl_->scratch);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

void NcclCommunicator::Abort() { impl_->Abort(); }

Status NcclCommunicator::AllReduce(const void* send, void* recv, size_t count, DType dtype,
                                   ReduceOp op) {
  if (count == 0) return Status::Ok();
  return impl_->Run("all-reduce", [&] {
    return ncclAllReduce(send, recv, count, ToNccl(dtype), ToNccl(op), impl_->comm, impl_->stream);
  });
}

Status NcclCommunicator::Broadcast(void* buf, size_t count, DType dtype, int root) {
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "broadcast"));
  if (count == 0) return Status::Ok();
  return impl_->Run("broadcast", [&] {
    return ncclBroadcast(buf, buf, count, ToNccl(dtype), root, impl_->comm, impl_->stream);
  });
}

Status NcclCommunicator::AllGather(const void* send, void* recv, size_t count, DType dtype) {
  if (count == 0) return Status::Ok();
  return impl_->Run("all-gather", [&] {
    return ncclAllGather(send, recv, count, ToNccl(dtype), impl_->comm, impl_->stream);
  });
}

Status NcclCommunicator::ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                                       ReduceOp op) {
  if (count == 0) return Status::Ok();
  // In place (send == recv): NCCL's in-place form puts rank r's block at
  // recv + r * count; our contract puts it at the front, so move it there.
  return impl_->Run("reduce-scatter", [&] {
    void* out = send == recv ? static_cast<char*>(recv) +
                                   count * DTypeSize(dtype) * static_cast<size_t>(rank_)
                             : recv;
    ncclResult_t r =
        ncclReduceScatter(send, out, count, ToNccl(dtype), ToNccl(op), impl_->comm, impl_->stream);
    if (r == ncclSuccess && out != recv) {
      cudaMemcpyAsync(recv, out, count * DTypeSize(dtype), cudaMemcpyDeviceToDevice, impl_->stream);
    }
    return r;
  });
}

Status NcclCommunicator::Reduce(const void* send, void* recv, size_t count, DType dtype,
                                ReduceOp op, int root) {
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "reduce"));
  if (count == 0) return Status::Ok();
  return impl_->Run("reduce", [&] {
    return ncclReduce(send, recv, count, ToNccl(dtype), ToNccl(op), root, impl_->comm,
                      impl_->stream);
  });
}

Status NcclCommunicator::AllToAll(const void* send, void* recv, size_t count, DType dtype) {
  if (count == 0) return Status::Ok();
  const size_t block = count * DTypeSize(dtype);
  return impl_->Run("all-to-all", [&] {
    ncclGroupStart();
    for (int p = 0; p < size_; ++p) {
      ncclSend(static_cast<const char*>(send) + block * static_cast<size_t>(p), count,
               ToNccl(dtype), p, impl_->comm, impl_->stream);
      ncclRecv(static_cast<char*>(recv) + block * static_cast<size_t>(p), count, ToNccl(dtype), p,
               impl_->comm, impl_->stream);
    }
    return ncclGroupEnd();
  });
}

Status NcclCommunicator::Send(const void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "send"));
  if (count == 0) return Status::Ok();
  return impl_->Run("send", [&] {
    return ncclSend(buf, count, ToNccl(dtype), peer, impl_->comm, impl_->stream);
  });
}

Status NcclCommunicator::Recv(void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "recv"));
  if (count == 0) return Status::Ok();
  return impl_->Run("recv", [&] {
    return ncclRecv(buf, count, ToNccl(dtype), peer, impl_->comm, impl_->stream);
  });
}

Status NcclCommunicator::Barrier() {
  return impl_->Run("barrier", [&] {
    return ncclAllReduce(impl_->scratch, impl_->scratch, 1, ncclInt32, ncclSum, impl_->comm,
                         impl_->stream);
  });
}

Result<std::unique_ptr<Communicator>> NcclCommunicator::SplitGroup(int color, int key) {
  COHORT_RETURN_IF_ERROR(impl_->Usable());
  auto impl = std::make_unique<Impl>();
  impl->timeout = impl_->timeout;
  COHORT_RETURN_IF_ERROR(FromCuda(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking),
                                  "cudaStreamCreate"));
  COHORT_RETURN_IF_ERROR(FromCuda(cudaMalloc(&impl->scratch, 8), "cudaMalloc"));
  ncclConfig_t config = NonBlockingConfig();
  ncclResult_t r = ncclCommSplit(impl_->comm, color, key, &impl->comm, &config);
  COHORT_RETURN_IF_ERROR(impl->WaitIssued(r, "ncclCommSplit"));
  int n = 0, me = 0;
  ncclCommCount(impl->comm, &n);
  ncclCommUserRank(impl->comm, &me);
  auto out = std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl)));
  out->rank_ = me;
  out->size_ = n;
  out->device_ = device_;
  return std::unique_ptr<Communicator>(std::move(out));
}

Result<void*> NcclCommunicator::AllocateRegistered(size_t bytes) {
  if (bytes > kMaxRegisteredBytes)
    return InvalidArgument("registered buffer larger than kMaxRegisteredBytes");
  void* p = nullptr;
  COHORT_RETURN_IF_ERROR(FromCuda(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc"));
  return p;
}

Status NcclCommunicator::FreeRegistered(void* ptr) { return FromCuda(cudaFree(ptr), "cudaFree"); }

}  // namespace cohort
