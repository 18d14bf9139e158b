// Compiled only when COHORT_HAVE_CUDA (core/CMakeLists.txt).
#include "core/cuda_device.h"

#include <cuda_runtime_api.h>

namespace cohort {

int CudaRuntimeDeviceCount(std::string* why_not) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why_not) *why_not = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
    return 0;
  }
  if (n <= 0) {
    if (why_not) *why_not = "cudaGetDeviceCount: no CUDA device";
    return 0;
  }
  return n;
}

}  // namespace cohort
