// F16: sixteen floats in one AVX-512 register, with the arithmetic that vec_math.h's
// σ/tanh and lstm_math.h's cell formulas use, so those templates run on 16 units at a
// time unchanged (one formula for the scalar loops, the vector kernels and the GPU).
//
// Include only inside a `#pragma GCC target` region enabling AVX-512 (see
// lstm_window_step_avx512.cpp) and call only after checking the CPU: every function
// here is compiled for AVX-512. (A build with DNI_EMULATE_AVX512 takes the intrinsics
// from avx512_emulation.h instead, for any x86-64 CPU.)
#pragma once

#ifdef DNI_EMULATE_AVX512
#include "avx512_emulation.h"
#else
#include <immintrin.h>
#endif

#include <cstdint>

#include "vec_math.h"

namespace dni::cpu {

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

struct F16 {
  v16f v;
  F16() = default;
  // Broadcast, so that T(1) works in templates. _mm512_set1_ps, not v16f{} + s: GCC
  // cannot drop that + 0 (−0 + 0 is +0), so the tile product's inner loop spent a scalar
  // add and a register broadcast per row operand instead of one broadcast load.
  F16(float s) : v(_mm512_set1_ps(s)) {}  // NOLINT
  F16(v16f x) : v(x) {}            // NOLINT
};

inline F16 operator+(F16 a, F16 b) { return a.v + b.v; }
inline F16 operator-(F16 a, F16 b) { return a.v - b.v; }
inline F16 operator*(F16 a, F16 b) { return a.v * b.v; }
inline F16 operator/(F16 a, F16 b) { return a.v / b.v; }
inline F16 operator-(F16 a) { return -a.v; }
inline F16& operator+=(F16& a, F16 b) { return a = a + b; }

// a·b + c in one rounding (the build's ISO C++ mode does not contract a*b + c).
inline F16 fma(F16 a, F16 b, F16 c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }

inline F16 load16(const float* p) { return _mm512_loadu_ps(p); }
inline void store16(float* p, F16 a) { _mm512_storeu_ps(p, a.v); }

// exp_cephes's three type-specific pieces (vec_math.h): the same values as the float
// versions lane by lane, in one or two instructions each where GCC's plain vector code
// took two to four (a compare and a blend per bound; an add and a subtract; a convert,
// an add, a shift and a multiply). The exp runs five times per unit and step in the
// forward, inside the product's epilogue, so its instruction count is step time.
// (The all-lanes masked forms: GCC 12 warns that the plain forms' undefined pass-through
// operand is used uninitialized.)
constexpr __mmask16 kAllLanes = 0xFFFF;
inline F16 exp_clamp(F16 x) {
  // max(a, b) is a > b ? a : b, so x < lo ? lo : x (a NaN x passes), and likewise min.
  const __m512 low_clamped = _mm512_mask_max_ps(x.v, kAllLanes, _mm512_set1_ps(-87.0f), x.v);
  return _mm512_mask_min_ps(x.v, kAllLanes, _mm512_set1_ps(88.0f), low_clamped);
}
inline F16 round_integral(F16 m) {
  return _mm512_mask_roundscale_ps(m.v, kAllLanes, m.v,
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline F16 times_exp2(F16 e, F16 n) {  // e·2^⌊n⌋
  return _mm512_mask_scalef_ps(e.v, kAllLanes, e.v, n.v);
}
inline F16 exp_vec(F16 x) { return exp_cephes(x); }

}  // namespace dni::cpu
