#pragma once
// How many CUDA devices this process sees, straight from the CUDA runtime.
//
// Declared in every build but defined only in builds with CUDA
// (COHORT_HAVE_CUDA, core/cuda_device.cc); code that must also build without
// CUDA calls runtime/device_select.h's CudaDeviceCount instead. Links the
// CUDA runtime (cudart), never the driver.
#include <string>

namespace cohort {

// The number of devices cudaGetDeviceCount reports; 0 when it fails (no
// driver, no device, a broken CUDA_VISIBLE_DEVICES) or reports none, with the
// reason in *why_not (may be null). Thread-safe.
int CudaRuntimeDeviceCount(std::string* why_not);

}  // namespace cohort
