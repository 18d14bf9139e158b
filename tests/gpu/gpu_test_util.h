#pragma once
// For the `gpu` tests: skip, with the reason, when this process sees no CUDA
// device (ctest's SKIP_REGULAR_EXPRESSION matches "no CUDA device").
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>

namespace cohort::testing {

// Why the GPU tests cannot run here, or "" when a device is present.
inline std::string NoDeviceReason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    return std::string("no CUDA device: cudaGetDeviceCount: ") + cudaGetErrorString(e);
  if (count == 0) return "no CUDA device: cudaGetDeviceCount returned 0";
  return "";
}

}  // namespace cohort::testing

#define SKIP_WITHOUT_GPU()                                                 \
  do {                                                                     \
    static const std::string reason = ::cohort::testing::NoDeviceReason(); \
    if (!reason.empty()) GTEST_SKIP() << reason;                           \
  } while (0)
