// F8: eight floats in one AVX2 register, the AVX2 counterpart of simd16.h's F16, with
// the arithmetic that vec_math.h's σ/tanh and lstm_math.h's cell formulas use, so those
// templates run on 8 units at a time unchanged.
//
// Include only inside a `#pragma GCC target` region enabling AVX2 and FMA (see
// lstm_window_step_avx2.cpp) and call only after checking the CPU.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "vec_math.h"

namespace dni::cpu {

typedef float v8f __attribute__((vector_size(32)));

struct F8 {
  v8f v;
  F8() = default;
  F8(float s) : v(_mm256_set1_ps(s)) {}  // NOLINT: broadcast, as F16's
  F8(v8f x) : v(x) {}                    // NOLINT
};

inline F8 operator+(F8 a, F8 b) { return a.v + b.v; }
inline F8 operator-(F8 a, F8 b) { return a.v - b.v; }
inline F8 operator*(F8 a, F8 b) { return a.v * b.v; }
inline F8 operator/(F8 a, F8 b) { return a.v / b.v; }
inline F8 operator-(F8 a) { return -a.v; }
inline F8& operator+=(F8& a, F8 b) { return a = a + b; }

inline F8 fma(F8 a, F8 b, F8 c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }

inline F8 load8(const float* p) { return _mm256_loadu_ps(p); }
inline void store8(float* p, F8 a) { _mm256_storeu_ps(p, a.v); }

// exp_cephes's three type-specific pieces (vec_math.h), lane by lane the same values as
// the float versions. MAXPS/MINPS return their second operand when either is NaN, so
// with x second a NaN passes through the clamp, as in the scalar version.
inline F8 exp_clamp(F8 x) {
  return _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x.v));
}
inline F8 round_integral(F8 m) {
  return _mm256_round_ps(m.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline F8 times_exp2(F8 e, F8 n) {  // e·2^n for integral n in [−126, 127], as the float one
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return e.v * _mm256_castsi256_ps(bits);
}
inline F8 exp_vec(F8 x) { return exp_cephes(x); }

}  // namespace dni::cpu
