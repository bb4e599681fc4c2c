// F16: sixteen floats in one AVX-512 register, with the arithmetic that vec_math.h's
// σ/tanh and lstm_math.h's cell formulas use, so those templates run on 16 units at a
// time unchanged (one formula for the scalar loops, the vector kernels and the GPU).
//
// Include only inside a `#pragma GCC target` region enabling AVX-512 (see
// lstm_window_step_avx512.cpp) and call only after checking the CPU: every function
// here is compiled for AVX-512.
#pragma once

#include <immintrin.h>

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

// exp_cephes's two type-specific pieces (vec_math.h), lane by lane.
inline F16 exp_clamp(F16 x) {
  const v16f lo = v16f{} - 87.0f, hi = v16f{} + 88.0f;
  const v16f low_clamped = x.v < lo ? lo : x.v;
  return low_clamped > hi ? hi : low_clamped;
}
inline F16 exp2_integral(F16 n) {
  const v16i bits = (__builtin_convertvector(n.v, v16i) + 127) << 23;
  return (v16f)bits;  // a same-size vector cast keeps the bits
}
inline F16 exp_vec(F16 x) { return exp_cephes(x); }

}  // namespace dni::cpu
