#pragma once
// Shared by the CUDA kernel files: the per-thread error record and launch
// geometry. Not part of the public API.

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cohort::kernels::cuda::internal {

// Keeps the first error of this thread (with `where`) until LastError().
void RecordCuda(const char* where, cudaError_t e);
void RecordCublas(const char* where, int status);
// After a launch: records what cudaGetLastError reports, if anything.
inline void AfterLaunch(const char* where) { RecordCuda(where, cudaGetLastError()); }

// Row-major GEMMs over `batch` equally strided matrices (cublasSgemmStridedBatched,
// strict fp32 as Gemm): for i < batch, C_i = alpha op(A_i) op(B_i) + beta C_i
// with A_i = a + i * stride_a (elements), and so on. Layout as Gemm.
void GemmStridedBatched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb,
                        int64_t stride_b, float beta, float* c, int64_t ldc, int64_t stride_c,
                        int64_t batch);

constexpr int kThreads = 256;
// Grid-stride kernels: enough blocks to fill the card several times over
// (132 SMs on an H100), never more than needed.
inline unsigned Blocks(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 4096 ? 4096 : b));
}

}  // namespace cohort::kernels::cuda::internal
