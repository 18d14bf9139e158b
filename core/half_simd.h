#pragma once
// 8 lanes of bf16 / fp16 <-> fp32 with AVX2 + F16C intrinsics, for the array
// casts in core/dtype.cc and the shm reductions. Same bits as the scalar
// conversions of core/dtype.h: round to nearest even, NaN stays NaN (bf16
// sets the quiet bit as FloatToBF16 does), fp16 overflows to inf. Callers
// check CpuHasAvx2F16c() before entering code compiled for "avx2,f16c".
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#define COHORT_AVX2_INLINE __attribute__((target("avx2,f16c"), always_inline)) inline

namespace cohort::simd {

template <bool kBf16>
COHORT_AVX2_INLINE __m256 LoadHalf8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (kBf16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(h);
  }
}

template <bool kBf16>
COHORT_AVX2_INLINE void StoreHalf8(uint16_t* p, __m256 v) {
  if constexpr (kBf16) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, nan, is_nan);
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
}

}  // namespace cohort::simd
#endif  // __x86_64__
