#pragma once
// Inline float math for the CPU kernels' inner loops (kernels.cc,
// transformer.cc); internal to kernels/cpu. No calls, no branches and no
// float-to-int conversions, so a loop over these functions vectorises, where a
// loop calling glibc's expf or tanhf stays scalar (tanhf: ~20 ns a float).
//
// Every file that includes this header compiles with -fno-trapping-math and
// -ffp-contract=off (kernels/CMakeLists.txt); neither changes a result of the
// baseline x86-64 build. The first lets GCC turn the selects below into blends
// (with trapping math it keeps them as branches and the loop scalar). The
// second keeps a * b + c two roundings in every COHORT_KERNEL_CLONES clone,
// FMA or not, so a scalar call and a vectorised loop over the same inline
// function agree bitwise.

#include <bit>
#include <cmath>
#include <cstdint>

// On a function holding a loop over these helpers: GCC compiles it for
// AVX-512, AVX2 and the baseline (SSE2), and the loader picks the best the CPU
// has (ifunc); the build itself targets baseline x86-64. Off under the
// sanitizers, as in collectives/shm/reduce_kernels.cc: ifunc resolvers run
// before the sanitizer runtime is up.
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define COHORT_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define COHORT_KERNEL_CLONES
#endif

namespace cohort::kernels::fast_math {

// max as a value select (std::max returns a reference, which GCC leaves as a
// branch and does not vectorise).
inline float Max(float a, float b) { return a > b ? a : b; }

// exp(x) for x <= 0, within 1 ulp of std::exp down to x = -87 (checked
// exhaustively over those floats); below that, and for x = NaN, it returns
// ~1.6e-38 rather than a denormal or 0, which no softmax sum notices.
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6
// polynomial for exp(r): adding 1.5 * 2^23 rounds x / ln2 to the integer n
// and leaves n in the low bits of the sum, which become 2^n's exponent.
inline float ExpNonPositive(float x) {
  x = Max(x, -87.0f);
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  const float t = x * kLog2e + kRound;
  const float n = t - kRound;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const uint32_t two_n = (std::bit_cast<uint32_t>(t) + 127u) << 23;  // n in [-126, 0]
  return e * std::bit_cast<float>(two_n);
}

// tanh(u), within 1.16 ulp of std::tanh in double over every float in
// [-10, 10] (1 ulp of the exact value rounded to float); exactly +-1 for
// |u| > 9.011, as the rounded tanh; tanh(+-inf) = +-1, NaN stays NaN, the
// sign of zero is kept, and Tanh(-u) = -Tanh(u) bitwise. Both halves are
// computed and one selected, so a loop over Tanh vectorises.
inline float Tanh(float u) {
  const float a = std::fabs(u);
  // a < 1: tanh(a) = a + a^3 P(a^2), P of degree 6 fitted (Lawson's weighted
  // least squares) for tanh's relative error: 4.6e-9 before float rounding.
  const float s = a * a;
  float p = -3.584500228e-4f;
  p = p * s + 2.301357687e-3f;
  p = p * s + -7.946096361e-3f;
  p = p * s + 2.148665115e-2f;
  p = p * s + -5.387980118e-2f;
  p = p * s + 1.333234459e-1f;
  p = p * s + -3.333329558e-1f;
  const float small = a + a * s * p;
  // a >= 1: tanh(a) = 1 - 2e / (1 + e) with e = exp(-2a) <= 0.14, no
  // cancellation ((1 - e) / (1 + e) measured 1.5 ulp, this form 1.16).
  const float e = ExpNonPositive(-2.0f * a);
  const float large = 1.0f - 2.0f * e / (1.0f + e);
  // NaN fails a >= 1 and takes the polynomial, which keeps it NaN.
  return std::copysign(a >= 1.0f ? large : small, u);
}

}  // namespace cohort::kernels::fast_math
