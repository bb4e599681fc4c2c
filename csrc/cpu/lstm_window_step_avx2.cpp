// The fused AVX2 LSTM steps (lstm_window_step_avx2.h): the scheme of the AVX-512 steps
// (lstm_window_step_avx512.cpp) on 16 registers of 8 floats. Each parallel task owns a
// block of units and a group of batch rows; for each register tile of its rows it
// multiplies the rows by the block's packed weight panel, then applies the gate math
// (the same templates as the portable loops, on 8 lanes) before the results leave the
// registers.
//
// Tiles: 6 rows × 2 vectors, 12 accumulators of the 16 registers, the rest for the two
// weight vectors and a broadcast row value: per k, 2 weight loads and 6 broadcasts feed
// 12 FMAs, so that the FMAs (two per cycle on Zen 3 and Haswell alike) and not the loads
// set the pace. The backward's tile covers 16 units of dh. The forward needs all four
// gates of its 8 units before the gate math, so it runs two such products per tile, the
// (i, f) and the (g, o) pre-activations, and keeps the first in L1 meanwhile. (A 2-row
// tile of all four gates, 8 accumulators, loaded its weight vectors from memory for each
// row and ran the forward 20 % slower than the portable path.)
#include "lstm_window_step_avx2.h"

#include <ATen/Parallel.h>

// Before the target region, so that lstm_step_tiles.h's first inclusion of these is not
// compiled for AVX2.
#include <algorithm>
#include <type_traits>

#include "dni/lstm_math.h"
#include "dni/settings.h"
#include "dni/static_switch.h"
#include "vec_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DNI_LSTM_STEP_AVX2 1
#endif

namespace dni::cpu {

bool lstm_window_step_avx2_supported(const at::Tensor& w_hh) {
#ifdef DNI_LSTM_STEP_AVX2
  return cpu_has_avx2_fma() && w_hh.scalar_type() == at::kFloat &&
         w_hh.size(1) % kLstmStepUnitBlockAvx2 == 0;
#else
  return false;
#endif
}

// The packing is a plain loop: torch's permuted copy with these 8-float runs took
// 1.1 ms at H = 256 and 27 ms at H = 1024, against a window's 9–140 ms (the backward's,
// lstm_pack_unit_blocks, is a loop for the same reason).
at::Tensor lstm_pack_forward_weight_avx2(const at::Tensor& w_hh) {
  const at::Tensor w = w_hh.contiguous();
  const int64_t hidden = w.size(1);
  // packed[u][half][k][j][l] = W_hh[(2·half + j)·H + 8u + l][k]
  at::Tensor packed = at::empty({hidden / 8, 2, hidden, 16}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, hidden / 8, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      for (int64_t g = 0; g < 4; ++g) {
        const float* rows = src + (g * hidden + 8 * u) * hidden;  // 8 rows of H
        float* out = dst + (2 * u + g / 2) * hidden * 16 + (g % 2) * 8;
        for (int64_t k = 0; k < hidden; ++k) {
          for (int64_t l = 0; l < 8; ++l) out[16 * k + l] = rows[l * hidden + k];
        }
      }
    }
  });
  return packed;
}

}  // namespace dni::cpu

#ifdef DNI_LSTM_STEP_AVX2
#pragma GCC push_options
// An ISA list, not an arch (see lstm_window_step_avx512.cpp): the shared math templates
// are inlined only into callers of the same target.
#pragma GCC target("avx2,fma")
#include "lstm_step_tiles.h"
#include "simd8.h"

namespace dni::cpu {
namespace {

constexpr int kTileRows = 6;
// Rows per parallel task: two tiles, so that a task reuses its weight panel (from L2).
constexpr int64_t kRowsPerTask = 12;
static_assert(kRowsPerTask <= 16);  // write_row
// staged's row length: room for transpose_rows's 8-float stores from any of a task's
// rows.
constexpr int64_t kStagedLd = kRowsPerTask + 8;
static_assert(kStagedLd >= kRowsPerTask - 1 + 8);

// acc[r][q] = Σ_k a[r·lda + k] · panel[16k + 8q + lane] for the tile's kRows rows.
// Not inlined: inlined into the backward step (probably because its epilogue keeps more
// values live across the loop), GCC left one of the 12 accumulators on the stack (a
// load, FMA and store per k, chained through memory), and the backward steps ran at
// half the forward's rate (perf, T = 40, B = 32, H = 256). The sums are locals, stored
// once: acc could alias a or panel for all GCC knows, and it would store them every k.
// The call costs little: a call and kRows·2 stores and loads against kRows·2·depth FMAs.
template <int kRows>
__attribute__((noinline)) void multiply_tile(const float* a, int64_t lda, const float* panel,
                                             int64_t depth, F8 (&acc)[kRows][2]) {
  F8 sum[kRows][2];
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) sum[r][0] = sum[r][1] = F8(0.0f);
  for (int64_t k = 0; k < depth; ++k) {
    const F8 p0 = load8(panel + 16 * k), p1 = load8(panel + 16 * k + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      const F8 ar(a[r * lda + k]);
      sum[r][0] = fma(ar, p0, sum[r][0]);
      sum[r][1] = fma(ar, p1, sum[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = sum[r][0];
    acc[r][1] = sum[r][1];
  }
}

// dst[0, n) = src[0, n) for n ≤ 16 (one unit's rows of a task) in plain 8-, 4- and
// 1-float stores. A memcpy call per unit took a quarter of the backward step at B = 32,
// H = 256, and AVX2's masked store (VMASKMOVPS) is microcoded on AMD CPUs: it then took
// 14 % of the step. No loops: GCC turns a copy loop, intrinsics or not, into a memcpy
// call (it had done so again here, 1.6 % of the whole DNI window's time under perf).
inline void write_row(float* dst, const float* src, int64_t n) {
  int64_t h = 0;
  if (n >= 8) {
    _mm256_storeu_ps(dst, _mm256_loadu_ps(src));
    h = 8;
  }
  if (h + 8 <= n) {
    _mm256_storeu_ps(dst + h, _mm256_loadu_ps(src + h));
    return;  // n = 16
  }
  if (h + 4 <= n) {
    _mm_storeu_ps(dst + h, _mm_loadu_ps(src + h));
    h += 4;
  }
  if (h < n) dst[h] = src[h];
  if (h + 1 < n) dst[h + 1] = src[h + 1];
  if (h + 2 < n) dst[h + 2] = src[h + 2];
}

// dst[l·ld + r] = rows[r][l] for r < kRows (≤ 8), l < 8: eight 8-float stores, each
// with 8 − kRows floats of don't-care past its kRows (the next tile's rows overwrite
// them, or they lie past the task's rows, which write_row does not read).
template <int kRows>
inline void transpose_rows(const F8 (&rows)[kRows], float* dst, int64_t ld) {
  static_assert(kRows <= 8);
  __m256 in[8];
  for (int r = 0; r < kRows; ++r) in[r] = rows[r].v;
  for (int r = kRows; r < 8; ++r) in[r] = _mm256_setzero_ps();
  __m256 t[8], s[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(in[2 * i], in[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // rows 4i … 4i + 3
    s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int l = 0; l < 4; ++l) {
    _mm256_storeu_ps(dst + l * ld, _mm256_permute2f128_ps(s[l], s[4 + l], 0x20));
    _mm256_storeu_ps(dst + (l + 4) * ld, _mm256_permute2f128_ps(s[l], s[4 + l], 0x31));
  }
}

}  // namespace

void lstm_window_forward_step_avx2(float* z_t, const float* h_prev, const float* w_packed,
                                   const float* c_prev, float* c_t, float* h_t,
                                   int64_t batch, int64_t hidden) {
  // Block u is 8 units: its panel is two [H, 16] halves, the units' (i, f) and (g, o)
  // pre-activation columns.
  for_each_task<kTileRows, kRowsPerTask>(hidden / 8, batch, [&](int64_t u, int64_t row_begin,
                                                                 int64_t row_end) {
    const float* panel = w_packed + u * hidden * 32;
    const int64_t unit = u * 8;
    for_each_tile<kTileRows>(row_begin, row_end, [&](auto rows, int64_t row0) {
      constexpr int kRows = decltype(rows)::value;
      F8 acc_if[kRows][2], acc_go[kRows][2];
      prefetch_tile_gates<kRows>(z_t + row0 * 4 * hidden + unit, hidden, 1);
      prefetch_tile_rows<kRows>(c_prev + row0 * hidden + unit, hidden, 1);
      multiply_tile<kRows>(h_prev + row0 * hidden, hidden, panel, hidden, acc_if);
      multiply_tile<kRows>(h_prev + row0 * hidden, hidden, panel + 16 * hidden, hidden, acc_go);
      for (int r = 0; r < kRows; ++r) {
        float* z = z_t + (row0 + r) * 4 * hidden + unit;
        const F8 i = sigmoid_vec(load8(z) + acc_if[r][0]);
        const F8 f = sigmoid_vec(load8(z + hidden) + acc_if[r][1]);
        const F8 g = tanh_vec(load8(z + 2 * hidden) + acc_go[r][0]);
        const F8 o = sigmoid_vec(load8(z + 3 * hidden) + acc_go[r][1]);
        store8(z, i);
        store8(z + hidden, f);
        store8(z + 2 * hidden, g);
        store8(z + 3 * hidden, o);
        const int64_t s = (row0 + r) * hidden + unit;
        const F8 c = lstm_cell_next(i, f, g, load8(c_prev + s));
        store8(c_t + s, c);
        store8(h_t + s, o * tanh_vec(c));
      }
    });
  });
}

void lstm_window_backward_step_avx2(const float* dz_next, const float* dh_end,
                                    const float* w_packed, const float* gates_t,
                                    const float* c_t, const float* c_prev,
                                    const float* grad_h, const float* grad_c,
                                    float* dc_carry, float* dz_t, float* dz_by_unit,
                                    int64_t by_unit_ld, int64_t batch, int64_t hidden) {
  constexpr int64_t kUnits = kLstmStepUnitBlockAvx2;
  DNI_BOOL_SWITCH(grad_h != nullptr, kGradHs, [&] {
    DNI_BOOL_SWITCH(grad_c != nullptr, kGradCs, [&] {
      // Block p is 16 consecutive units of dh_t = dz_{t+1} W_hh (a depth of 4H).
      for_each_task<kTileRows, kRowsPerTask>(hidden / kUnits, batch, [&](int64_t p,
                                                                          int64_t row_begin,
                                                                          int64_t row_end) {
        const float* panel = w_packed + p * 4 * hidden * kUnits;
        const int64_t u0 = p * kUnits;
        // The task's dz unit-major, staged[g][u][r] (in L1), then written out one run
        // of rows per unit, as the AVX-512 steps do (there, storing each tile's rows
        // straight to the far-apart rows of dz_by_unit took 5–27 % longer). Each tile
        // fills it by 8×8 transposes in registers: staged lane by lane (384 scalar
        // stores per tile), the backward op took 2.5–3 % longer on one Zen 3 thread at
        // H = 256 (best of five alternating rounds; no difference at H = 1024). The
        // AVX-512 steps' write prefetch of the unit-major lines gained nothing here
        // (0.97–1.10 of the time over 14 alternating rounds), so it is not used.
        alignas(64) float staged[4][kUnits][kStagedLd];
        for_each_tile<kTileRows>(row_begin, row_end, [&](auto rows, int64_t row0) {
          constexpr int kRows = decltype(rows)::value;
          F8 acc[kRows][2];
          prefetch_tile_gates<kRows>(gates_t + row0 * 4 * hidden + u0, hidden, 1);
          const float* states[] = {c_t, c_prev, dc_carry, grad_h, grad_c};  // [B, H] each
          for (const float* state : states) {
            if (state != nullptr) prefetch_tile_rows<kRows>(state + row0 * hidden + u0, hidden, 1);
          }
          if (dz_next != nullptr) {
            multiply_tile<kRows>(dz_next + row0 * 4 * hidden, 4 * hidden, panel, 4 * hidden, acc);
          } else {
            for (int r = 0; r < kRows; ++r) {
              for (int q = 0; q < 2; ++q) {
                acc[r][q] = load8(dh_end + (row0 + r) * hidden + u0 + 8 * q);
              }
            }
          }
          alignas(32) F8 tile_dz[2][4][kRows];  // by q, gate, row
          for (int r = 0; r < kRows; ++r) {
            for (int q = 0; q < 2; ++q) {
              const int64_t unit = u0 + 8 * q;
              const int64_t s = (row0 + r) * hidden + unit;
              F8 dh = acc[r][q];
              if constexpr (kGradHs) dh += load8(grad_h + s);
              F8 dc = load8(dc_carry + s);
              if constexpr (kGradCs) dc += load8(grad_c + s);
              const float* a = gates_t + (row0 + r) * 4 * hidden + unit;
              F8 dz[4];
              store8(dc_carry + s,
                     lstm_unit_backward_given_tanh(
                         load8(a), load8(a + hidden), load8(a + 2 * hidden),
                         load8(a + 3 * hidden), tanh_vec(load8(c_t + s)), load8(c_prev + s),
                         dh, dc, dz[0], dz[1], dz[2], dz[3]));
              for (int g = 0; g < 4; ++g) {
                store8(dz_t + (row0 + r) * 4 * hidden + g * hidden + unit, dz[g]);
                tile_dz[q][g][r] = dz[g];
              }
            }
          }
          for (int q = 0; q < 2; ++q) {
            for (int g = 0; g < 4; ++g) {
              transpose_rows<kRows>(tile_dz[q][g], &staged[g][8 * q][row0 - row_begin],
                                    kStagedLd);
            }
          }
        });
        for (int g = 0; g < 4; ++g) {
          for (int64_t u = 0; u < kUnits; ++u) {
            write_row(dz_by_unit + (g * hidden + u0 + u) * by_unit_ld + row_begin, staged[g][u],
                      row_end - row_begin);
          }
        }
      });
    });
  });
}

void lstm_window_recurrent_grad_avx2(const float* dz, const float* w_packed, float* dh,
                                     int64_t batch, int64_t hidden) {
  constexpr int64_t kUnits = kLstmStepUnitBlockAvx2;
  for_each_task<kTileRows, kRowsPerTask>(hidden / kUnits, batch, [&](int64_t p,
                                                                      int64_t row_begin,
                                                                      int64_t row_end) {
    const float* panel = w_packed + p * 4 * hidden * kUnits;
    for_each_tile<kTileRows>(row_begin, row_end, [&](auto rows, int64_t row0) {
      constexpr int kRows = decltype(rows)::value;
      F8 acc[kRows][2];
      multiply_tile<kRows>(dz + row0 * 4 * hidden, 4 * hidden, panel, 4 * hidden, acc);
      for (int r = 0; r < kRows; ++r) {
        for (int q = 0; q < 2; ++q) {
          store8(dh + (row0 + r) * hidden + p * kUnits + 8 * q, acc[r][q]);
        }
      }
    });
  });
}

}  // namespace dni::cpu
#pragma GCC pop_options

#else  // no GCC x86-64 build: lstm_window_step_avx2_supported() is false, never called

namespace dni::cpu {

void lstm_window_forward_step_avx2(float*, const float*, const float*, const float*, float*,
                                   float*, int64_t, int64_t) {
  TORCH_CHECK(false, "dni: the AVX2 LSTM step is not built for this target");
}

void lstm_window_backward_step_avx2(const float*, const float*, const float*, const float*,
                                    const float*, const float*, const float*, const float*,
                                    float*, float*, float*, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "dni: the AVX2 LSTM step is not built for this target");
}

void lstm_window_recurrent_grad_avx2(const float*, const float*, float*, int64_t, int64_t) {
  TORCH_CHECK(false, "dni: the AVX2 LSTM step is not built for this target");
}

}  // namespace dni::cpu
#endif
