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

// Always inlined, like DNI_HOST_DEVICE (dni/math.h): lstm_window_step_avx512.cpp
// instantiates the templates below on 16-lane vectors.
#if defined(__GNUC__)
#define DNI_VEC_INLINE inline __attribute__((always_inline))
#else
#define DNI_VEC_INLINE inline
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DNI_CPU_ISA_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DNI_CPU_ISA_CLONES
#endif

namespace dni::cpu {

// The three type-specific pieces of exp_cephes, for float here and for the 16-lane vector
// of simd16.h there (which computes the same values in fewer instructions): the clamp
// (so that 2^n below stays a normal float; NaN passes through both tests), rounding to
// the nearest integer (ties to even) for |m| < 2^22, by the 1.5·2^23 trick (pure float
// adds, which vectorise on any ISA), and e·2^n for an integral-valued n, with 2^n built
// in the exponent bits.
inline float exp_clamp(float x) { return x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x); }
inline float round_integral(float m) { return (m + 0x1.8p23f) - 0x1.8p23f; }
inline float times_exp2(float e, float n) {
  return e * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

template <typename F>
DNI_VEC_INLINE F exp_cephes(F x) {
  x = exp_clamp(x);
  const F n = round_integral(x * 1.44269504088896341f);  // round(x / ln 2)
  // r = x − n·ln 2 in two parts (0.693359375 is exact in float), so r keeps its bits.
  F r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  F p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F e_r = p * (r * r) + r + 1.0f;
  return times_exp2(e_r, n);
}

inline float exp_vec(float x) { return exp_cephes(x); }

inline double exp_vec(double x) { return std::exp(x); }

template <typename T>
DNI_VEC_INLINE T sigmoid_vec(T x) {
  return T(1) / (T(1) + exp_vec(-x));
}

// tanh(x) = 2σ(2x) − 1: one exp, and exact at the saturated ends.
template <typename T>
DNI_VEC_INLINE T tanh_vec(T x) {
  return T(2) * sigmoid_vec(T(2) * x) - T(1);
}

}  // namespace dni::cpu
