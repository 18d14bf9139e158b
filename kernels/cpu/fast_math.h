#pragma once
// Inline float math for the CPU kernels' inner loops (kernels.cc,
// transformer.cc); internal to kernels/cpu. No calls, no branches and no
// float-to-int conversions, so a loop over these functions vectorises, where a
// loop calling glibc's expf stays scalar.
//
// Every file that includes this header compiles with -fno-trapping-math
// (kernels/CMakeLists.txt): it lets GCC turn the selects below into blends
// (with trapping math it keeps them as branches and the loop scalar) and
// changes no result.

#include <bit>
#include <cmath>
#include <cstdint>

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

}  // namespace cohort::kernels::fast_math
