// exp, σ and tanh that a CPU kernel's loop can vectorise.
//
// libm's expf is a call GCC cannot vectorise, and ATen's SIMD versions are whole-tensor
// passes (one more sweep over memory and one more parallel region per use). These are
// plain arithmetic: Cephes' expf range reduction and degree-5 polynomial, measured at
// most 1.4 ulp from exp over [−87, 88], and σ, tanh to 9e-8 and 1.8e-7 absolute. float
// only; double keeps libm (it is the gradcheck path, where exactness matters more than
// speed).
//
// DNI_CPU_ISA_CLONES compiles a function for AVX-512, AVX2+FMA and the x86-64 baseline
// and picks one when the library loads (GCC target_clones): the extension itself is
// built for the baseline, so without it these loops would run 4 floats wide.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DNI_CPU_ISA_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DNI_CPU_ISA_CLONES
#endif

namespace dni::cpu {

inline float exp_vec(float x) {
  // Clamped so that 2^n below stays a normal float; NaN passes through both tests.
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2) by the 1.5·2^23 trick: pure float adds, which vectorise on any ISA.
  const float n = (x * 1.44269504088896341f + 0x1.8p23f) - 0x1.8p23f;
  // r = x − n·ln 2 in two parts (0.693359375 is exact in float), so r keeps its bits.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * (r * r) + r + 1.0f;
  const int32_t two_to_n = (static_cast<int32_t>(n) + 127) << 23;
  return e_r * std::bit_cast<float>(two_to_n);
}

inline double exp_vec(double x) { return std::exp(x); }

template <typename T>
inline T sigmoid_vec(T x) {
  return T(1) / (T(1) + exp_vec(-x));
}

// tanh(x) = 2σ(2x) − 1: one exp, and exact at the saturated ends.
template <typename T>
inline T tanh_vec(T x) {
  return T(2) * sigmoid_vec(T(2) * x) - T(1);
}

}  // namespace dni::cpu
