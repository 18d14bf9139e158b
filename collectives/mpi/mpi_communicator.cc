#include "collectives/mpi/mpi_communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace cohort {
namespace {

bool g_we_initialised = false;
MPI_Datatype g_f16_type = MPI_DATATYPE_NULL;
MPI_Datatype g_bf16_type = MPI_DATATYPE_NULL;
MPI_Op g_half_ops[5] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};

Status FromMpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return Status::Ok();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return Unavailable(std::string("MPI ") + what + " failed: " + std::string(text, len));
}

template <ReduceOp kOp>
float Combine(float a, float b) {
  switch (kOp) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return a + b;
    case ReduceOp::kMax:
      return std::max(a, b);
    case ReduceOp::kMin:
      return std::min(a, b);
    case ReduceOp::kProd:
      return a * b;
  }
  return a;
}

// MPI user op over 16-bit floats: inout[i] = in[i] (op) inout[i], in fp32.
template <ReduceOp kOp>
void HalfOp(void* in, void* inout, int* len, MPI_Datatype* type) {
  auto* a = static_cast<uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  if (*type == g_bf16_type) {
    for (int i = 0; i < *len; ++i) {
      b[i] = FloatToBF16(Combine<kOp>(BF16ToFloat({a[i]}), BF16ToFloat({b[i]}))).bits;
    }
  } else {
    for (int i = 0; i < *len; ++i) {
      b[i] = FloatToF16(Combine<kOp>(F16ToFloat({a[i]}), F16ToFloat({b[i]}))).bits;
    }
  }
}

MPI_Datatype ToMpi(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kI64:
      return MPI_INT64_T;
    case DType::kF16:
      return g_f16_type;
    case DType::kBF16:
      return g_bf16_type;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op ToMpi(ReduceOp op, DType t) {
  if (t == DType::kF16 || t == DType::kBF16) return g_half_ops[static_cast<int>(op)];
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
    case ReduceOp::kProd:
      return MPI_PROD;
  }
  return MPI_OP_NULL;
}

// Divides `count` elements by `n` in place (the second half of kAvg).
void DivideInPlace(void* buf, size_t count, DType t, int n) {
  switch (t) {
    case DType::kF32: {
      auto* p = static_cast<float*>(buf);
      const float inv = 1.0f / static_cast<float>(n);
      for (size_t i = 0; i < count; ++i) p[i] *= inv;
      break;
    }
    case DType::kF64: {
      auto* p = static_cast<double*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= n;
      break;
    }
    case DType::kI32: {
      auto* p = static_cast<int32_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= n;
      break;
    }
    case DType::kI64: {
      auto* p = static_cast<int64_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= n;
      break;
    }
    case DType::kF16: {
      auto* p = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] = FloatToF16(F16ToFloat({p[i]}) / n).bits;
      break;
    }
    case DType::kBF16: {
      auto* p = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] = FloatToBF16(BF16ToFloat({p[i]}) / n).bits;
      break;
    }
  }
}

Status CheckCount(size_t count) {
  if (count > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return InvalidArgument("MPI backend: count " + std::to_string(count) +
                           " exceeds INT_MAX elements; split the buffer");
  }
  return Status::Ok();
}

}  // namespace

Status MpiRuntime::Init(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    COHORT_RETURN_IF_ERROR(
        FromMpi(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread"));
    g_we_initialised = true;
  }
  if (g_f16_type == MPI_DATATYPE_NULL) {
    MPI_Type_contiguous(2, MPI_BYTE, &g_f16_type);
    MPI_Type_commit(&g_f16_type);
    MPI_Type_contiguous(2, MPI_BYTE, &g_bf16_type);
    MPI_Type_commit(&g_bf16_type);
    MPI_Op_create(&HalfOp<ReduceOp::kSum>, 1, &g_half_ops[0]);
    MPI_Op_create(&HalfOp<ReduceOp::kAvg>, 1, &g_half_ops[1]);
    MPI_Op_create(&HalfOp<ReduceOp::kMax>, 1, &g_half_ops[2]);
    MPI_Op_create(&HalfOp<ReduceOp::kMin>, 1, &g_half_ops[3]);
    MPI_Op_create(&HalfOp<ReduceOp::kProd>, 1, &g_half_ops[4]);
  }
  return Status::Ok();
}

void MpiRuntime::Finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_we_initialised && !finalized) {
    for (MPI_Op& op : g_half_ops) {
      if (op != MPI_OP_NULL) MPI_Op_free(&op);
    }
    if (g_f16_type != MPI_DATATYPE_NULL) MPI_Type_free(&g_f16_type);
    if (g_bf16_type != MPI_DATATYPE_NULL) MPI_Type_free(&g_bf16_type);
    MPI_Finalize();
  }
}

bool MpiRuntime::LaunchedByMpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
}

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::World() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) return FailedPrecondition("MpiCommunicator::World before MpiRuntime::Init");
  MPI_Comm dup;
  COHORT_RETURN_IF_ERROR(FromMpi(MPI_Comm_dup(MPI_COMM_WORLD, &dup), "MPI_Comm_dup"));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(dup));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  StopAsync();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Status MpiCommunicator::AllReduce(const void* send, void* recv, size_t count, DType dtype,
                                  ReduceOp op) {
  COHORT_RETURN_IF_ERROR(CheckCount(count));
  if (count == 0) return Status::Ok();
  const void* s = send == recv ? MPI_IN_PLACE : send;
  COHORT_RETURN_IF_ERROR(FromMpi(
      MPI_Allreduce(s, recv, static_cast<int>(count), ToMpi(dtype), ToMpi(op, dtype), comm_),
      "MPI_Allreduce"));
  if (op == ReduceOp::kAvg) DivideInPlace(recv, count, dtype, size_);
  return Status::Ok();
}

Status MpiCommunicator::Broadcast(void* buf, size_t count, DType dtype, int root) {
  COHORT_RETURN_IF_ERROR(CheckCount(count));
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "broadcast"));
  if (count == 0) return Status::Ok();
  return FromMpi(MPI_Bcast(buf, static_cast<int>(count), ToMpi(dtype), root, comm_), "MPI_Bcast");
}

Status MpiCommunicator::AllGather(const void* send, void* recv, size_t count, DType dtype) {
  COHORT_RETURN_IF_ERROR(CheckCount(count * static_cast<size_t>(size_)));
  if (count == 0) return Status::Ok();
  const char* own = static_cast<const char*>(recv) + count * DTypeSize(dtype) * rank_;
  const void* s = send == own ? MPI_IN_PLACE : send;
  return FromMpi(MPI_Allgather(s, static_cast<int>(count), ToMpi(dtype), recv,
                               static_cast<int>(count), ToMpi(dtype), comm_),
                 "MPI_Allgather");
}

Status MpiCommunicator::ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                                      ReduceOp op) {
  COHORT_RETURN_IF_ERROR(CheckCount(count * static_cast<size_t>(size_)));
  if (count == 0) return Status::Ok();
  // In place: recv holds the whole input (count * size elements) and keeps block 0 on return
  // in MPI; we follow the Communicator contract instead (send == recv means the input is in
  // recv and rank r's block lands at the front), which is MPI_IN_PLACE's behaviour.
  const void* s = send == recv ? MPI_IN_PLACE : send;
  COHORT_RETURN_IF_ERROR(FromMpi(MPI_Reduce_scatter_block(s, recv, static_cast<int>(count),
                                                          ToMpi(dtype), ToMpi(op, dtype), comm_),
                                 "MPI_Reduce_scatter_block"));
  if (op == ReduceOp::kAvg) DivideInPlace(recv, count, dtype, size_);
  return Status::Ok();
}

Status MpiCommunicator::Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                               int root) {
  COHORT_RETURN_IF_ERROR(CheckCount(count));
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "reduce"));
  if (count == 0) return Status::Ok();
  const void* s = (rank_ == root && send == recv) ? MPI_IN_PLACE : send;
  COHORT_RETURN_IF_ERROR(FromMpi(
      MPI_Reduce(s, recv, static_cast<int>(count), ToMpi(dtype), ToMpi(op, dtype), root, comm_),
      "MPI_Reduce"));
  if (op == ReduceOp::kAvg && rank_ == root) DivideInPlace(recv, count, dtype, size_);
  return Status::Ok();
}

Status MpiCommunicator::AllToAll(const void* send, void* recv, size_t count, DType dtype) {
  COHORT_RETURN_IF_ERROR(CheckCount(count * static_cast<size_t>(size_)));
  if (count == 0) return Status::Ok();
  const void* s = send == recv ? MPI_IN_PLACE : send;
  return FromMpi(MPI_Alltoall(s, static_cast<int>(count), ToMpi(dtype), recv,
                              static_cast<int>(count), ToMpi(dtype), comm_),
                 "MPI_Alltoall");
}

Status MpiCommunicator::Send(const void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckCount(count));
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "send"));
  return FromMpi(MPI_Send(buf, static_cast<int>(count), ToMpi(dtype), peer, 0, comm_), "MPI_Send");
}

Status MpiCommunicator::Recv(void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckCount(count));
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "recv"));
  return FromMpi(
      MPI_Recv(buf, static_cast<int>(count), ToMpi(dtype), peer, 0, comm_, MPI_STATUS_IGNORE),
      "MPI_Recv");
}

Result<std::unique_ptr<Communicator>> MpiCommunicator::SplitGroup(int color, int key) {
  COHORT_ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> sub, Split(color, key));
  return std::unique_ptr<Communicator>(std::move(sub));
}

Status MpiCommunicator::Barrier() { return FromMpi(MPI_Barrier(comm_), "MPI_Barrier"); }

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Split(int color, int key) const {
  MPI_Comm out;
  COHORT_RETURN_IF_ERROR(FromMpi(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split"));
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(out));
}

}  // namespace cohort
