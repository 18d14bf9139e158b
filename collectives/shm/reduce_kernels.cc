#include "collectives/shm/reduce_kernels.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/check.h"
#include "core/half_simd.h"

namespace cohort::shm {
namespace {

// Elements per block: 4 KiB of fp32 accumulators, well inside L1.
constexpr size_t kBlock = 1024;
constexpr int kMaxInputs = 64;  // = kShmMaxRanks

#define COHORT_ALWAYS_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define COHORT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define COHORT_CLONES
#endif

template <ReduceOp kOp, typename A>
COHORT_ALWAYS_INLINE A Combine(A a, A b) {
  if constexpr (kOp == ReduceOp::kSum || kOp == ReduceOp::kAvg) {
    if constexpr (std::is_integral_v<A>) {
      using U = std::make_unsigned_t<A>;
      return static_cast<A>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  } else if constexpr (kOp == ReduceOp::kMax) {
    return a < b ? b : a;
  } else if constexpr (kOp == ReduceOp::kMin) {
    return b < a ? b : a;
  } else {
    if constexpr (std::is_integral_v<A>) {
      using U = std::make_unsigned_t<A>;
      return static_cast<A>(static_cast<U>(a) * static_cast<U>(b));
    } else {
      return a * b;
    }
  }
}

// ---- 16-bit float conversions, branch-free so they vectorise -----------------

COHORT_ALWAYS_INLINE float Bf16ToF32(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}
COHORT_ALWAYS_INLINE uint16_t F32ToBf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
// IEEE half <-> float (F. Giesen's half_to_float_fast5 / float_to_half_fast3_rtne).
COHORT_ALWAYS_INLINE float F16ToF32(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  const uint32_t inf_nan = o + ((128u - 16u) << 23);
  const float denorm = std::bit_cast<float>(o + (1u << 23)) - std::bit_cast<float>(113u << 23);
  o = exp == shifted_exp ? inf_nan : (exp == 0 ? std::bit_cast<uint32_t>(denorm) : o);
  o |= (static_cast<uint32_t>(h) & 0x8000u) << 16;
  return std::bit_cast<float>(o);
}
COHORT_ALWAYS_INLINE uint16_t F32ToF16(float value) {
  const uint32_t f32_infty = 255u << 23;
  const uint32_t f16_max = (127u + 16u) << 23;
  const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  uint32_t f = std::bit_cast<uint32_t>(value);
  const uint32_t sign = f & 0x80000000u;
  f ^= sign;
  const uint32_t big = f > f32_infty ? 0x7e00u : 0x7c00u;
  const uint32_t small =
      std::bit_cast<uint32_t>(std::bit_cast<float>(f) + std::bit_cast<float>(denorm_magic)) -
      denorm_magic;
  const uint32_t mant_odd = (f >> 13) & 1u;
  const uint32_t normal = (f + ((15u - 127u) << 23) + 0xfffu + mant_odd) >> 13;
  const uint32_t o = f >= f16_max ? big : (f < (113u << 23) ? small : normal);
  return static_cast<uint16_t>(o | (sign >> 16));
}

// ---- Block loops ----------------------------------------------------------------

template <typename T, ReduceOp kOp>
COHORT_ALWAYS_INLINE void NativeRange(const void* const* in, int n, void* out, size_t count,
                                      int divisor) {
  T acc[kBlock];
  for (size_t base = 0; base < count; base += kBlock) {
    const size_t len = std::min(kBlock, count - base);
    const T* a = static_cast<const T*>(in[0]) + base;
    for (size_t i = 0; i < len; ++i) acc[i] = a[i];
    for (int k = 1; k < n; ++k) {
      const T* b = static_cast<const T*>(in[k]) + base;
      for (size_t i = 0; i < len; ++i) acc[i] = Combine<kOp>(acc[i], b[i]);
    }
    if constexpr (kOp == ReduceOp::kAvg) {
      const T d = static_cast<T>(divisor);
      for (size_t i = 0; i < len; ++i) acc[i] = acc[i] / d;
    }
    std::memcpy(static_cast<T*>(out) + base, acc, len * sizeof(T));
  }
}

template <bool kBf16>
COHORT_ALWAYS_INLINE float HalfToF32(uint16_t h) {
  if constexpr (kBf16) {
    return Bf16ToF32(h);
  } else {
    return F16ToF32(h);
  }
}
template <bool kBf16>
COHORT_ALWAYS_INLINE uint16_t F32ToHalf(float f) {
  if constexpr (kBf16) {
    return F32ToBf16(f);
  } else {
    return F32ToF16(f);
  }
}

template <bool kBf16, ReduceOp kOp>
COHORT_ALWAYS_INLINE void HalfRange(const void* const* in, int n, void* out, size_t count,
                                    int divisor) {
  float acc[kBlock];
  uint16_t res[kBlock];
  for (size_t base = 0; base < count; base += kBlock) {
    const size_t len = std::min(kBlock, count - base);
    const uint16_t* a = static_cast<const uint16_t*>(in[0]) + base;
    for (size_t i = 0; i < len; ++i) acc[i] = HalfToF32<kBf16>(a[i]);
    for (int k = 1; k < n; ++k) {
      const uint16_t* b = static_cast<const uint16_t*>(in[k]) + base;
      for (size_t i = 0; i < len; ++i) acc[i] = Combine<kOp>(acc[i], HalfToF32<kBf16>(b[i]));
    }
    if constexpr (kOp == ReduceOp::kAvg) {
      const float d = static_cast<float>(divisor);
      for (size_t i = 0; i < len; ++i) acc[i] = acc[i] / d;
    }
    for (size_t i = 0; i < len; ++i) res[i] = F32ToHalf<kBf16>(acc[i]);
    std::memcpy(static_cast<uint16_t*>(out) + base, res, len * sizeof(uint16_t));
  }
}

#if defined(__x86_64__)
// ---- 16-bit floats with AVX2 + F16C intrinsics (8 lanes) ------------------------
// The auto-vectoriser does not turn the fp16 conversions above into vcvtph2ps;
// this path does, and handles bf16 with shifts. Same results as HalfRange:
// fp32 accumulation, one round-to-nearest-even at the end.
#define COHORT_AVX2 COHORT_AVX2_INLINE
using simd::LoadHalf8;
using simd::StoreHalf8;

template <ReduceOp kOp>
COHORT_AVX2 __m256 CombineVec(__m256 a, __m256 b) {
  if constexpr (kOp == ReduceOp::kSum || kOp == ReduceOp::kAvg) {
    return _mm256_add_ps(a, b);
  } else if constexpr (kOp == ReduceOp::kMax) {
    return _mm256_max_ps(b, a);  // a < b ? b : a, as the scalar loop
  } else if constexpr (kOp == ReduceOp::kMin) {
    return _mm256_min_ps(b, a);
  } else {
    return _mm256_mul_ps(a, b);
  }
}

template <bool kBf16, ReduceOp kOp>
__attribute__((target("avx2,f16c"))) void HalfRangeAvx2(const void* const* in, int n, void* out,
                                                        size_t count, int divisor) {
  const __m256 d = _mm256_set1_ps(static_cast<float>(divisor));
  auto* o = static_cast<uint16_t*>(out);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m256 acc = LoadHalf8<kBf16>(static_cast<const uint16_t*>(in[0]) + i);
    for (int k = 1; k < n; ++k) {
      acc = CombineVec<kOp>(acc, LoadHalf8<kBf16>(static_cast<const uint16_t*>(in[k]) + i));
    }
    if constexpr (kOp == ReduceOp::kAvg) acc = _mm256_div_ps(acc, d);
    StoreHalf8<kBf16>(o + i, acc);
  }
  if (i < count) {
    const void* tail[kMaxInputs];
    for (int k = 0; k < n; ++k) tail[k] = static_cast<const uint16_t*>(in[k]) + i;
    HalfRange<kBf16, kOp>(tail, n, o + i, count - i, divisor);
  }
}

bool HaveAvx2F16c() { return CpuHasAvx2F16c(); }
#endif  // __x86_64__

#define COHORT_DISPATCH_OPS(CALL) \
  switch (op) {                   \
    case ReduceOp::kSum:          \
      CALL(ReduceOp::kSum);       \
      break;                      \
    case ReduceOp::kAvg:          \
      CALL(ReduceOp::kAvg);       \
      break;                      \
    case ReduceOp::kMax:          \
      CALL(ReduceOp::kMax);       \
      break;                      \
    case ReduceOp::kMin:          \
      CALL(ReduceOp::kMin);       \
      break;                      \
    case ReduceOp::kProd:         \
      CALL(ReduceOp::kProd);      \
      break;                      \
  }

// One function per dtype, cloned per instruction set; each op's loop inlined.
#define COHORT_NATIVE_FN(NAME)                                                                \
  COHORT_CLONES void NAME(ReduceOp op, const void* const* in, int n, void* out, size_t count, \
                          int divisor) {                                                      \
    COHORT_DISPATCH_OPS(COHORT_NATIVE_CALL_##NAME)                                            \
  }

#define COHORT_NATIVE_CALL_ReduceF32(OP) NativeRange<float, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceF64(OP) NativeRange<double, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceI32(OP) NativeRange<int32_t, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceI64(OP) NativeRange<int64_t, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceBf16(OP) HalfRange<true, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceF16(OP) HalfRange<false, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceBf16Avx2(OP) HalfRangeAvx2<true, OP>(in, n, out, count, divisor)
#define COHORT_NATIVE_CALL_ReduceF16Avx2(OP) HalfRangeAvx2<false, OP>(in, n, out, count, divisor)

COHORT_NATIVE_FN(ReduceF32)
COHORT_NATIVE_FN(ReduceF64)
COHORT_NATIVE_FN(ReduceI32)
COHORT_NATIVE_FN(ReduceI64)
COHORT_NATIVE_FN(ReduceBf16)
COHORT_NATIVE_FN(ReduceF16)

#if defined(__x86_64__)
void ReduceBf16Avx2(ReduceOp op, const void* const* in, int n, void* out, size_t count,
                    int divisor) {
  COHORT_DISPATCH_OPS(COHORT_NATIVE_CALL_ReduceBf16Avx2)
}
void ReduceF16Avx2(ReduceOp op, const void* const* in, int n, void* out, size_t count,
                   int divisor) {
  COHORT_DISPATCH_OPS(COHORT_NATIVE_CALL_ReduceF16Avx2)
}
#endif

}  // namespace

void ReduceInto(DType dtype, ReduceOp op, const void* const* in, int n, void* out, size_t count,
                int avg_divisor) {
  COHORT_CHECK(n >= 1 && n <= kMaxInputs) << "ReduceInto takes 1 to " << kMaxInputs << " inputs";
  if (count == 0) return;
  switch (dtype) {
    case DType::kF32:
      ReduceF32(op, in, n, out, count, avg_divisor);
      break;
    case DType::kF64:
      ReduceF64(op, in, n, out, count, avg_divisor);
      break;
    case DType::kI32:
      ReduceI32(op, in, n, out, count, avg_divisor);
      break;
    case DType::kI64:
      ReduceI64(op, in, n, out, count, avg_divisor);
      break;
#if defined(__x86_64__)
    case DType::kBF16:
      if (HaveAvx2F16c()) {
        ReduceBf16Avx2(op, in, n, out, count, avg_divisor);
      } else {
        ReduceBf16(op, in, n, out, count, avg_divisor);
      }
      break;
    case DType::kF16:
      if (HaveAvx2F16c()) {
        ReduceF16Avx2(op, in, n, out, count, avg_divisor);
      } else {
        ReduceF16(op, in, n, out, count, avg_divisor);
      }
      break;
#else
    case DType::kBF16:
      ReduceBf16(op, in, n, out, count, avg_divisor);
      break;
    case DType::kF16:
      ReduceF16(op, in, n, out, count, avg_divisor);
      break;
#endif
  }
}

std::string_view ReduceKernelIsa() {
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "default";
}

}  // namespace cohort::shm
