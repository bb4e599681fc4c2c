// The AVX-512 intrinsics of simd16.h and lstm_window_step_avx512.cpp in portable code,
// for a build with -DDNI_EMULATE_AVX512 (scripts/check_avx512_emulated.sh): it runs the
// AVX-512 LSTM steps on an x86-64 CPU without AVX-512 (GCC builds), to test what they
// compute (the tests of python_tests/test_lstm.py against the reference), not their
// speed. Never part of a normal build. Not bit for bit the hardware's results: compiled
// for the baseline ISA, SIMDe's fused multiply-add rounds twice, and its scalef flushes
// subnormal inputs to zero; the tests compare within their tolerances.
//
// SIMDe (https://github.com/simd-everywhere/simde, the libsimde-dev package) provides
// the intrinsics, and macros that send the intrinsics' names to them; its 0.7 releases
// lack the two masked moves of write_row, defined below with the hardware's rules (under
// other names: GCC's own declarations of these, from <immintrin.h>, are in scope).
#pragma once

// GCC's header first (ATen includes it anyway): SIMDe 0.7 has no __mmask16 of its own.
#include <immintrin.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include <cstdint>
#include <cstdlib>

#ifndef _mm512_maskz_load_ps
// VMOVAPS with a zeroing mask: faults on an address that is not 64-byte aligned, even
// with lanes masked off, so the emulation aborts there too.
inline __m512 dni_emulated_maskz_load_ps(__mmask16 lanes, const void* p) {
  if (reinterpret_cast<std::uintptr_t>(p) % 64 != 0) std::abort();
  const float* src = static_cast<const float*>(p);
  simde__m512_private out;
  for (int l = 0; l < 16; ++l) out.f32[l] = (lanes >> l) & 1 ? src[l] : 0.0f;
  return simde__m512_from_private(out);
}
#define _mm512_maskz_load_ps dni_emulated_maskz_load_ps
#endif

#ifndef _mm512_mask_storeu_ps
// VMOVUPS with a merging mask: writes only the selected lanes.
inline void dni_emulated_mask_storeu_ps(void* p, __mmask16 lanes, __m512 a) {
  const simde__m512_private in = simde__m512_to_private(a);
  float* dst = static_cast<float*>(p);
  for (int l = 0; l < 16; ++l) {
    if ((lanes >> l) & 1) dst[l] = in.f32[l];
  }
}
#define _mm512_mask_storeu_ps dni_emulated_mask_storeu_ps
#endif
