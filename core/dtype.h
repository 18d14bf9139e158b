#pragma once
// Element types and devices, and the fp16/bf16 conversions every layer shares.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/status.h"

namespace cohort {

enum class DType : uint8_t { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3, kI32 = 4, kI64 = 5 };
inline constexpr DType kAllDTypes[] = {DType::kF32,  DType::kF64, DType::kF16,
                                       DType::kBF16, DType::kI32, DType::kI64};

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF64:
      return 8;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
  }
  return 0;
}
constexpr bool IsFloating(DType t) { return t != DType::kI32 && t != DType::kI64; }

// Short names as in nccl-tests and safetensors: "float", "F32"...
std::string_view DTypeName(DType t);              // float, double, half, bfloat16, int32, int64
std::string_view DTypeSafetensorsName(DType t);   // F32, F64, F16, BF16, I32, I64
Result<DType> ParseDType(std::string_view name);  // accepts either spelling

enum class Device : uint8_t { kCpu = 0, kCuda = 1 };
std::string_view DeviceName(Device d);

// bfloat16 / IEEE half stored as raw bits. Conversions round to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
};
struct Float16 {
  uint16_t bits = 0;
};

inline float BF16ToFloat(BFloat16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline BFloat16 FloatToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40)};  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}

float F16ToFloat(Float16 h);
Float16 FloatToF16(float f);

// Array casts: out[i] = half(in[i] * scale) with `half` kBF16 or kF16, and
// out[i] = float(in[i]) * scale; the same bits as the scalar conversions
// above, 8 lanes at a time with AVX2 + F16C when the CPU has them (the
// compiler does not vectorise the scalar fp16 conversion). Other dtypes
// abort (a caller bug).
void CastFloatToHalf(DType half, const float* in, void* out, size_t count, float scale);
void CastHalfToFloat(DType half, const void* in, float* out, size_t count, float scale);
// True when this CPU runs AVX2 and F16C (checked once).
bool CpuHasAvx2F16c();

// Element i of a buffer of dtype t, read as / written from a double (16-bit
// floats round to nearest even; integers truncate). For tests, benchmarks
// and checks, not for hot loops.
double LoadElement(DType t, const void* buf, size_t i);
void StoreElement(DType t, void* buf, size_t i, double v);

}  // namespace cohort
