// The current stream, the per-thread error record and the cuBLAS GEMMs (host
// code: compiled by the C++ compiler, not nvcc).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

#include "core/check.h"
#include "kernels/cuda/internal.h"
#include "kernels/cuda/kernels.h"

namespace cohort::kernels::cuda {
namespace {

thread_local cudaStream_t t_stream = nullptr;
thread_local std::string t_error;  // empty: none

// One cuBLAS handle per thread, made on first use and kept for the thread's
// life (destroying it at thread exit could run after the CUDA context is gone).
cublasHandle_t Handle() {
  thread_local cublasHandle_t handle = nullptr;
  if (handle == nullptr) {
    const cublasStatus_t s = cublasCreate(&handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
      internal::RecordCublas("cublasCreate", s);
      handle = nullptr;
      return nullptr;
    }
  }
  cublasSetStream(handle, t_stream);
  return handle;
}

cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      break;
  }
  COHORT_CHECK(false) << "GemmMixed: no CUDA type for " << DTypeName(t);
  return CUDA_R_32F;
}

}  // namespace

namespace internal {
void RecordCuda(const char* where, cudaError_t e) {
  if (e == cudaSuccess || !t_error.empty()) return;
  t_error = std::string(where) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}
void RecordCublas(const char* where, int status) {
  if (status == CUBLAS_STATUS_SUCCESS || !t_error.empty()) return;
  t_error = std::string(where) + ": " + cublasGetStatusString(static_cast<cublasStatus_t>(status));
}
}  // namespace internal

void SetStream(cudaStream_t stream) { t_stream = stream; }
cudaStream_t Stream() { return t_stream; }

Status LastError() {
  internal::RecordCuda("asynchronous", cudaGetLastError());
  if (t_error.empty()) return Status::Ok();
  Status s = Internal("CUDA kernels: " + t_error +
                      "; check device memory and arguments (compute-sanitizer finds bad pointers)");
  t_error.clear();
  return s;
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
// operands and the sizes m and n; the leading dimensions stay.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cublasHandle_t h = Handle();
  if (h == nullptr) return;
  internal::RecordCublas(
      "cublasSgemm",
      cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                  static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                  static_cast<int>(ldb), a, static_cast<int>(lda), &beta, c,
                  static_cast<int>(ldc)));
}

namespace internal {
void GemmStridedBatched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb,
                        int64_t stride_b, float beta, float* c, int64_t ldc, int64_t stride_c,
                        int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  cublasHandle_t h = Handle();
  if (h == nullptr) return;
  RecordCublas("cublasSgemmStridedBatched",
               cublasSgemmStridedBatched(
                   h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                   static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                   static_cast<int>(ldb), stride_b, a, static_cast<int>(lda), stride_a, &beta, c,
                   static_cast<int>(ldc), stride_c, static_cast<int>(batch)));
}
}  // namespace internal

void GemmMixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               DType ab_type, const void* a, int64_t lda, const void* b, int64_t ldb, float beta,
               DType c_type, void* c, int64_t ldc) {
  COHORT_CHECK(c_type == DType::kF32 || c_type == ab_type) << DTypeName(c_type);
  if (m == 0 || n == 0) return;
  cublasHandle_t h = Handle();
  if (h == nullptr) return;
  internal::RecordCublas(
      "cublasGemmEx",
      cublasGemmEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                   static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
                   CudaType(ab_type), static_cast<int>(ldb), a, CudaType(ab_type),
                   static_cast<int>(lda), &beta, c, CudaType(c_type), static_cast<int>(ldc),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace cohort::kernels::cuda
