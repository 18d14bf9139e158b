#include "core/dtype.h"

#include <string>

#include "core/check.h"
#include "core/half_simd.h"

namespace cohort {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "float";
    case DType::kF64:
      return "double";
    case DType::kF16:
      return "half";
    case DType::kBF16:
      return "bfloat16";
    case DType::kI32:
      return "int32";
    case DType::kI64:
      return "int64";
  }
  return "?";
}

std::string_view DTypeSafetensorsName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF64:
      return "F64";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
  }
  return "?";
}

Result<DType> ParseDType(std::string_view name) {
  for (DType t : kAllDTypes) {
    if (name == DTypeName(t) || name == DTypeSafetensorsName(t)) return t;
  }
  if (name == "fp32" || name == "f32") return DType::kF32;
  if (name == "fp64" || name == "f64") return DType::kF64;
  if (name == "fp16" || name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  return InvalidArgument("unknown dtype '" + std::string(name) +
                         "' (expected one of float, double, half, bfloat16, int32, int64)");
}

std::string_view DeviceName(Device d) { return d == Device::kCpu ? "cpu" : "cuda"; }

float F16ToFloat(Float16 h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t mant = h.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Float16 FloatToF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return Float16{static_cast<uint16_t>(sign | 0x7e00u)};   // NaN
  if (abs >= 0x477ff000u) return Float16{static_cast<uint16_t>(sign | 0x7c00u)};  // overflow -> inf
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return Float16{sign};  // rounds to zero
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    // value = mant * 2^(exp-150); a half subnormal counts units of 2^-24.
    const uint32_t d = 126 - exp;  // 14..24
    uint32_t q = mant >> d;
    const uint32_t rem = mant & ((1u << d) - 1);
    const uint32_t halfway = 1u << (d - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return Float16{static_cast<uint16_t>(sign | q)};
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits (nearest even).
  uint32_t v = abs - ((127u - 15u) << 23);
  const uint32_t rem = v & 0x1fffu;
  v >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (v & 1u))) ++v;  // may carry into exponent: correct
  return Float16{static_cast<uint16_t>(sign | v)};
}

double LoadElement(DType t, const void* buf, size_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(buf)[i];
    case DType::kF64:
      return static_cast<const double*>(buf)[i];
    case DType::kI32:
      return static_cast<const int32_t*>(buf)[i];
    case DType::kI64:
      return static_cast<double>(static_cast<const int64_t*>(buf)[i]);
    case DType::kF16:
      return F16ToFloat({static_cast<const uint16_t*>(buf)[i]});
    case DType::kBF16:
      return BF16ToFloat({static_cast<const uint16_t*>(buf)[i]});
  }
  return 0;
}

void StoreElement(DType t, void* buf, size_t i, double v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(buf)[i] = static_cast<float>(v);
      break;
    case DType::kF64:
      static_cast<double*>(buf)[i] = v;
      break;
    case DType::kI32:
      static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v);
      break;
    case DType::kI64:
      static_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v);
      break;
    case DType::kF16:
      static_cast<uint16_t*>(buf)[i] = FloatToF16(static_cast<float>(v)).bits;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(buf)[i] = FloatToBF16(static_cast<float>(v)).bits;
      break;
  }
}

bool CpuHasAvx2F16c() {
#if defined(__x86_64__)
  static const bool have = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  return have;
#else
  return false;
#endif
}

namespace {

#if defined(__x86_64__)
// Whole groups of 8; returns how many elements it did.
template <bool kBf16>
__attribute__((target("avx2,f16c"))) size_t FloatToHalfAvx2(const float* in, uint16_t* out,
                                                            size_t count, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  size_t i = 0;
  for (; i + 8 <= count; i += 8)
    simd::StoreHalf8<kBf16>(out + i, _mm256_mul_ps(_mm256_loadu_ps(in + i), s));
  return i;
}

template <bool kBf16>
__attribute__((target("avx2,f16c"))) size_t HalfToFloatAvx2(const uint16_t* in, float* out,
                                                            size_t count, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  size_t i = 0;
  for (; i + 8 <= count; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(simd::LoadHalf8<kBf16>(in + i), s));
  return i;
}
#endif

}  // namespace

void CastFloatToHalf(DType half, const float* in, void* out, size_t count, float scale) {
  COHORT_CHECK(half == DType::kBF16 || half == DType::kF16)
      << "CastFloatToHalf casts to bf16 or fp16";
  auto* o = static_cast<uint16_t*>(out);
  const bool bf16 = half == DType::kBF16;
  size_t i = 0;
#if defined(__x86_64__)
  if (CpuHasAvx2F16c())
    i = bf16 ? FloatToHalfAvx2<true>(in, o, count, scale)
             : FloatToHalfAvx2<false>(in, o, count, scale);
#endif
  for (; i < count; ++i)
    o[i] = bf16 ? FloatToBF16(in[i] * scale).bits : FloatToF16(in[i] * scale).bits;
}

void CastHalfToFloat(DType half, const void* in, float* out, size_t count, float scale) {
  COHORT_CHECK(half == DType::kBF16 || half == DType::kF16)
      << "CastHalfToFloat casts from bf16 or fp16";
  const auto* h = static_cast<const uint16_t*>(in);
  const bool bf16 = half == DType::kBF16;
  size_t i = 0;
#if defined(__x86_64__)
  if (CpuHasAvx2F16c())
    i = bf16 ? HalfToFloatAvx2<true>(h, out, count, scale)
             : HalfToFloatAvx2<false>(h, out, count, scale);
#endif
  for (; i < count; ++i)
    out[i] = (bf16 ? BF16ToFloat(BFloat16{h[i]}) : F16ToFloat(Float16{h[i]})) * scale;
}

}  // namespace cohort
