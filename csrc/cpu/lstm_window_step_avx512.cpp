// The fused AVX-512 LSTM steps (lstm_window_step_avx512.h).
//
// Each parallel task owns a block of units and a group of batch rows. For each tile of
// up to 6 rows it multiplies the rows by the block's packed weight panel into 24
// registers (6 rows × 4 vectors of 16 floats; each weight vector loaded once per k and
// used 6 times, so the FMAs and not the loads set the pace), then applies the gate math
// (the same templates as the portable loops, on 16 lanes) and stores the results.
#include "lstm_window_step_avx512.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "dni/lstm_math.h"
#include "dni/settings.h"
#include "dni/static_switch.h"
#include "vec_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DNI_LSTM_STEP_AVX512 1
#endif

namespace dni::cpu {

bool lstm_window_step_avx512_supported(const at::Tensor& w_hh) {
#ifdef DNI_LSTM_STEP_AVX512
  // cpu_has_avx512: the ISA that the target pragma below compiles the steps for (an
  // emulated build runs them on any x86-64 CPU, see avx512_emulation.h).
#ifdef DNI_EMULATE_AVX512
  constexpr bool kEmulated = true;
#else
  constexpr bool kEmulated = false;
#endif
  return (kEmulated || cpu_has_avx512()) && w_hh.scalar_type() == at::kFloat &&
         w_hh.size(1) % kLstmStepUnitBlock == 0;
#else
  return false;
#endif
}

}  // namespace dni::cpu

#ifdef DNI_LSTM_STEP_AVX512
#pragma GCC push_options
// An ISA list, not "arch=x86-64-v4": GCC inlines baseline functions (the shared math
// templates) only into callers of the same arch. prfchw: __builtin_prefetch's write
// hint becomes PREFETCHW, which every AVX-512 CPU has. An emulated build compiles for the
// baseline ISA, its intrinsics portable code (avx512_emulation.h).
#ifndef DNI_EMULATE_AVX512
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prfchw")
#endif
#include "lstm_step_tiles.h"
#include "simd16.h"

namespace dni::cpu {
namespace {

// Rows per parallel task: several tiles, so that a task reuses its weight panel (64 KiB
// at H = 256, from L2) across them; one tile when that leaves fewer than two tasks per
// thread (many threads, few unit blocks: the backward at H = 256 has 4).
constexpr int64_t kRowsPerTask = 16;

// Rows per register tile: 6, so 24 accumulators (of 32 registers), each weight vector
// loaded once per k serving 6 FMAs.
constexpr int kTileRows = 6;

// A task's rows fit one 16-lane vector per unit in the backward's staging (write_row).
static_assert(kTileRows <= kRowsPerTask && kRowsPerTask <= 16);

// Depth of the k-loop's chunks; the depths used (H, 4H) are multiples of it.
constexpr int64_t kDepthChunk = 16;

// acc[r][q] = Σ_k a[r·lda + k] · panel[k·64 + 16q + lane], for the tile's kRows rows;
// before each chunk of 16 k, also a few of the write prefetches of lines
// line_address(i), i in [first, last), spread over the product so that they arrive
// while it runs. The prefetch loop sits between the chunks, not in the FMA loop (a
// test there made GCC spill the accumulators), and its counter is carried from chunk
// to chunk (GCC deletes a loop that only prefetches).
template <int kRows, typename LineAddress>
inline void multiply_tile(const float* a, int64_t lda, const float* panel, int64_t depth,
                          F16 (&acc)[kRows][4], LineAddress&& line_address, int64_t first,
                          int64_t last) {
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = F16(0.0f);
  }
  const int64_t per_chunk = (last - first + depth / kDepthChunk - 1) / (depth / kDepthChunk);
  int64_t line = first;
  for (int64_t k0 = 0; k0 < depth; k0 += kDepthChunk) {
    for (int64_t j = 0; j < per_chunk && line < last; ++j, ++line) {
      __builtin_prefetch(line_address(line), 1, 2);
    }
    for (int64_t k = k0; k < k0 + kDepthChunk; ++k) {
      const float* pk = panel + k * kLstmStepUnitBlock;
      const F16 p0 = load16(pk), p1 = load16(pk + 16), p2 = load16(pk + 32),
                p3 = load16(pk + 48);
#pragma GCC unroll 6
      for (int r = 0; r < kRows; ++r) {
        const F16 ar(a[r * lda + k]);
        acc[r][0] = fma(ar, p0, acc[r][0]);
        acc[r][1] = fma(ar, p1, acc[r][1]);
        acc[r][2] = fma(ar, p2, acc[r][2]);
        acc[r][3] = fma(ar, p3, acc[r][3]);
      }
    }
  }
}

// The product alone.
template <int kRows>
inline void multiply_tile(const float* a, int64_t lda, const float* panel, int64_t depth,
                          F16 (&acc)[kRows][4]) {
  multiply_tile<kRows>(a, lda, panel, depth, acc, [](int64_t) { return nullptr; }, 0, 0);
}

// dst[l·ld + r] = rows[r][g][l]: one gate of a backward tile's dz, 16 units by up to 6
// rows, written unit-major. Each group of four rows goes as sixteen 4-float stores after
// an in-register 4×16 transpose (eight two-source permutes), a pair of rows as sixteen
// 2-float stores after two permutes, a last row lane by lane.
constexpr v16i kPairs01 = {0, 16, 4, 20, 8, 24, 12, 28, 1, 17, 5, 21, 9, 25, 13, 29};
constexpr v16i kPairs23 = {2, 18, 6, 22, 10, 26, 14, 30, 3, 19, 7, 23, 11, 27, 15, 31};

// Two rows: after kPairs01 (kPairs23), lanes 2i, 2i+1 hold unit 4(i mod 4) + j of both
// rows, with j = 0 for i < 4 and 1 after (2 and 3 for kPairs23).
inline void store_pair(const F16 (*rows)[4], int g, float* dst, int64_t ld) {
  float pairs[2][16];
  store16(pairs[0], __builtin_shuffle(rows[0][g].v, rows[1][g].v, kPairs01));
  store16(pairs[1], __builtin_shuffle(rows[0][g].v, rows[1][g].v, kPairs23));
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 8; ++i) {
      std::memcpy(dst + (4 * (i % 4) + 2 * h + i / 4) * ld, pairs[h] + 2 * i, 8);
    }
  }
}

inline void store_quad(const F16 (*rows)[4], int g, float* dst, int64_t ld) {
  // The two pairs as above, then quadruples: lanes 4k … 4k+3 hold unit 4k + j of rows
  // 0 … 3.
  constexpr v16i kQuadsFirst = {0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23};
  constexpr v16i kQuadsSecond = {8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31};
  const v16f r01a = __builtin_shuffle(rows[0][g].v, rows[1][g].v, kPairs01);
  const v16f r23a = __builtin_shuffle(rows[2][g].v, rows[3][g].v, kPairs01);
  const v16f r01b = __builtin_shuffle(rows[0][g].v, rows[1][g].v, kPairs23);
  const v16f r23b = __builtin_shuffle(rows[2][g].v, rows[3][g].v, kPairs23);
  float units[4][16];  // units[j][4k + r] = rows[r][g][4k + j]
  store16(units[0], __builtin_shuffle(r01a, r23a, kQuadsFirst));
  store16(units[1], __builtin_shuffle(r01a, r23a, kQuadsSecond));
  store16(units[2], __builtin_shuffle(r01b, r23b, kQuadsFirst));
  store16(units[3], __builtin_shuffle(r01b, r23b, kQuadsSecond));
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 4; ++j) std::memcpy(dst + (4 * k + j) * ld, units[j] + 4 * k, 16);
  }
}

template <int kRows>
inline void store_by_unit(const F16 (&rows)[kRows][4], int g, float* dst, int64_t ld) {
  static_assert(kRows <= 6);
  if constexpr (kRows >= 4) store_quad(rows, g, dst, ld);
  constexpr int kDone = kRows >= 4 ? 4 : 0;
  if constexpr (kRows - kDone >= 2) store_pair(rows + kDone, g, dst + kDone, ld);
  if constexpr ((kRows - kDone) % 2 == 1) {
    float lanes[16];
    store16(lanes, rows[kRows - 1][g]);
    for (int l = 0; l < 16; ++l) dst[l * ld + kRows - 1] = lanes[l];
  }
}

// dst[0, n) = row[0, n), n ≤ 16, as one masked store.
inline void write_row(float* dst, const float* row, int64_t n) {
  const auto lanes = static_cast<__mmask16>((1u << n) - 1);
  _mm512_mask_storeu_ps(dst, lanes, _mm512_maskz_load_ps(lanes, row));
}

// Transposes 16 rows of 16 floats in registers: four rounds of two-source permutes, round
// b exchanging the b-blocks between rows i and i + b (each round swaps one bit of the
// row index with the same bit of the lane index).
// Source lane (of a, b: 0–15, 16–31) for lane x of the lower (row i) or upper (row
// i + kBlock) result.
template <int kBlock, bool kUpper>
constexpr int transpose_lane(int x) {
  const bool from_b = (x & kBlock) != 0;
  return kUpper ? (from_b ? 16 + x : x + kBlock) : (from_b ? 16 + x - kBlock : x);
}

template <int kBlock, bool kUpper, int... kLanes>
constexpr v16i transpose_mask(std::integer_sequence<int, kLanes...>) {
  return v16i{transpose_lane<kBlock, kUpper>(kLanes)...};
}

template <int kBlock>
inline void transpose_round(v16f (&rows)[16]) {
  constexpr v16i kLower = transpose_mask<kBlock, false>(std::make_integer_sequence<int, 16>{});
  constexpr v16i kUpper = transpose_mask<kBlock, true>(std::make_integer_sequence<int, 16>{});
  for (int i = 0; i < 16; ++i) {
    if (i & kBlock) continue;
    const v16f a = rows[i], b = rows[i + kBlock];
    rows[i] = __builtin_shuffle(a, b, kLower);
    rows[i + kBlock] = __builtin_shuffle(a, b, kUpper);
  }
}

}  // namespace

at::Tensor lstm_pack_forward_weight(const at::Tensor& w_hh) {
  // packed[u][k][g][l] = W_hh[g·H + 16u + l][k]: per (u, g), a transpose of 16 rows of
  // W_hh, done 16×16 at a time (torch's permuted copy took 6.5 ms at H = 1024).
  const at::Tensor w = w_hh.contiguous();
  const int64_t hidden = w.size(1);
  at::Tensor packed = at::empty({hidden / 16, hidden, 4, 16}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, hidden / 16, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      for (int64_t g = 0; g < 4; ++g) {
        const float* rows_at = src + (g * hidden + u * 16) * hidden;
        for (int64_t k0 = 0; k0 < hidden; k0 += 16) {
          v16f rows[16];
          for (int l = 0; l < 16; ++l) rows[l] = load16(rows_at + l * hidden + k0).v;
          transpose_round<8>(rows);
          transpose_round<4>(rows);
          transpose_round<2>(rows);
          transpose_round<1>(rows);
          for (int k = 0; k < 16; ++k) {
            store16(dst + ((u * hidden + k0 + k) * 4 + g) * 16, rows[k]);
          }
        }
      }
    }
  });
  return packed;
}

void lstm_window_forward_step_avx512(float* z_t, const float* h_prev, const float* w_packed,
                                     const float* c_prev, float* c_t, float* h_t,
                                     int64_t batch, int64_t hidden) {
  // Block u is 16 units: its panel's 64 columns are their i, f, g and o pre-activations.
  for_each_task<kTileRows, kRowsPerTask>(hidden / 16, batch, [&](int64_t u, int64_t row_begin,
                                                                  int64_t row_end) {
    const float* panel = w_packed + u * hidden * kLstmStepUnitBlock;
    const int64_t unit = u * 16;
    for_each_tile<kTileRows>(row_begin, row_end, [&](auto rows, int64_t row0) {
      constexpr int kRows = decltype(rows)::value;
      F16 acc[kRows][4];
      prefetch_tile_gates<kRows>(z_t + row0 * 4 * hidden + unit, hidden, 1);
      prefetch_tile_rows<kRows>(c_prev + row0 * hidden + unit, hidden, 1);
      multiply_tile<kRows>(h_prev + row0 * hidden, hidden, panel, hidden, acc);
      for (int r = 0; r < kRows; ++r) {
        float* z = z_t + (row0 + r) * 4 * hidden + unit;
        const F16 i = sigmoid_vec(load16(z) + acc[r][0]);
        const F16 f = sigmoid_vec(load16(z + hidden) + acc[r][1]);
        const F16 g = tanh_vec(load16(z + 2 * hidden) + acc[r][2]);
        const F16 o = sigmoid_vec(load16(z + 3 * hidden) + acc[r][3]);
        store16(z, i);
        store16(z + hidden, f);
        store16(z + 2 * hidden, g);
        store16(z + 3 * hidden, o);
        const int64_t s = (row0 + r) * hidden + unit;
        const F16 c = lstm_cell_next(i, f, g, load16(c_prev + s));
        store16(c_t + s, c);
        store16(h_t + s, o * tanh_vec(c));
      }
    });
  });
}

void lstm_window_backward_step_avx512(const float* dz_next, const float* dh_end,
                                      const float* w_packed, const float* gates_t, const float* c_t,
                                      const float* c_prev, const float* grad_h,
                                      const float* grad_c, float* dc_carry, float* dz_t,
                                      float* dz_by_unit, int64_t by_unit_ld, int64_t batch,
                                      int64_t hidden) {
  DNI_BOOL_SWITCH(grad_h != nullptr, kGradHs, [&] {
    DNI_BOOL_SWITCH(grad_c != nullptr, kGradCs, [&] {
      // Block p is 64 consecutive units of dh_t = dz_{t+1} W_hh (a depth of 4H).
      for_each_task<kTileRows, kRowsPerTask>(
          hidden / kLstmStepUnitBlock, batch, [&](int64_t p, int64_t row_begin, int64_t row_end) {
        const float* panel = w_packed + p * 4 * hidden * kLstmStepUnitBlock;
        // The task's dz unit-major, staged[g][u][r] for unit p·64 + u, row row_begin + r:
        // its tiles transpose into it (in L1), then each unit's rows go out as one store,
        // a whole cache line for a 16-row task. Storing each tile's few rows straight to
        // dz_by_unit (4H rows far apart) took 5–27 % longer per backward pass.
        alignas(64) float staged[4][kLstmStepUnitBlock][kRowsPerTask];
        for_each_tile<kTileRows>(row_begin, row_end, [&](auto rows, int64_t row0) {
          constexpr int kRows = decltype(rows)::value;
          F16 acc[kRows][4];
          const int64_t u0 = p * kLstmStepUnitBlock;
          constexpr int kLines = kLstmStepUnitBlock / 16;
          prefetch_tile_gates<kRows>(gates_t + row0 * 4 * hidden + u0, hidden, kLines);
          const float* states[] = {c_t, c_prev, dc_carry, grad_h, grad_c};  // [B, H] each
          for (const float* state : states) {
            if (state != nullptr) {
              prefetch_tile_rows<kRows>(state + row0 * hidden + u0, hidden, kLines);
            }
          }
          if (dz_next != nullptr) {
            // The task's 4·64 unit-major lines, stored once its last tile is staged,
            // are requested for writing during the products, each tile its share: those
            // stores miss every cache, and stalled the task's end. The backward step
            // passes alone took 5 % less time with it (B = 256, H = 256: 5.60 → 5.27
            // ms at T = 8, 31.3 → 29.9 at T = 40; T = 40, B = 32: 3.71 → 3.53; T = 8,
            // B = 256, H = 1024: 77.2 → 75.6; best of five alternating rounds).
            // The tile's share is in proportion to its rows: tiles differ in size (a
            // short rest is split evenly with the last full tile), so an index of equal
            // tiles would request one share twice and the last never.
            const int64_t task_rows = row_end - row_begin, first = row0 - row_begin;
            constexpr int64_t kTaskLines = 4 * kLstmStepUnitBlock;
            multiply_tile<kRows>(
                dz_next + row0 * 4 * hidden, 4 * hidden, panel, 4 * hidden, acc,
                [&](int64_t line) {
                  const auto l = static_cast<uint64_t>(line);  // ≥ 0: a shift, a mask
                  const int64_t g = l / kLstmStepUnitBlock, u = l % kLstmStepUnitBlock;
                  return dz_by_unit + (g * hidden + u0 + u) * by_unit_ld + row_begin;
                },
                kTaskLines * first / task_rows, kTaskLines * (first + kRows) / task_rows);
          } else {
            for (int r = 0; r < kRows; ++r) {
              for (int q = 0; q < 4; ++q) {
                acc[r][q] = load16(dh_end + (row0 + r) * hidden + p * kLstmStepUnitBlock + q * 16);
              }
            }
          }
          for (int q = 0; q < 4; ++q) {
            const int64_t unit = p * kLstmStepUnitBlock + q * 16;
            F16 dz[kRows][4];  // the tile's dz for these 16 units, by row and gate
            for (int r = 0; r < kRows; ++r) {
              const int64_t s = (row0 + r) * hidden + unit;
              F16 dh = acc[r][q];
              if constexpr (kGradHs) dh += load16(grad_h + s);
              F16 dc = load16(dc_carry + s);
              if constexpr (kGradCs) dc += load16(grad_c + s);
              const float* a = gates_t + (row0 + r) * 4 * hidden + unit;
              store16(dc_carry + s,
                      lstm_unit_backward_given_tanh(
                          load16(a), load16(a + hidden), load16(a + 2 * hidden),
                          load16(a + 3 * hidden), tanh_vec(load16(c_t + s)),
                          load16(c_prev + s), dh, dc, dz[r][0], dz[r][1], dz[r][2], dz[r][3]));
              for (int g = 0; g < 4; ++g) {
                store16(dz_t + (row0 + r) * 4 * hidden + g * hidden + unit, dz[r][g]);
              }
            }
            for (int g = 0; g < 4; ++g) {
              store_by_unit<kRows>(dz, g, staged[g][q * 16] + (row0 - row_begin), kRowsPerTask);
            }
          }
        });
        for (int g = 0; g < 4; ++g) {
          for (int64_t u = 0; u < kLstmStepUnitBlock; ++u) {
            write_row(dz_by_unit + (g * hidden + p * kLstmStepUnitBlock + u) * by_unit_ld +
                          row_begin,
                      staged[g][u], row_end - row_begin);
          }
        }
      });
    });
  });
}

void lstm_window_recurrent_grad_avx512(const float* dz, const float* w_packed, float* dh,
                                       int64_t batch, int64_t hidden) {
  for_each_task<kTileRows, kRowsPerTask>(
      hidden / kLstmStepUnitBlock, batch, [&](int64_t p, int64_t row_begin, int64_t row_end) {
    const float* panel = w_packed + p * 4 * hidden * kLstmStepUnitBlock;
    for_each_tile<kTileRows>(row_begin, row_end, [&](auto rows, int64_t row0) {
      constexpr int kRows = decltype(rows)::value;
      F16 acc[kRows][4];
      multiply_tile<kRows>(dz + row0 * 4 * hidden, 4 * hidden, panel, 4 * hidden, acc);
      for (int r = 0; r < kRows; ++r) {
        for (int q = 0; q < 4; ++q) {
          store16(dh + (row0 + r) * hidden + p * kLstmStepUnitBlock + q * 16, acc[r][q]);
        }
      }
    });
  });
}

}  // namespace dni::cpu
#pragma GCC pop_options

#else  // no AVX-512 build: lstm_window_step_avx512_supported() is false, never called

namespace dni::cpu {

at::Tensor lstm_pack_forward_weight(const at::Tensor&) {
  TORCH_CHECK(false, "dni: the AVX-512 LSTM step is not built for this target");
}

void lstm_window_forward_step_avx512(float*, const float*, const float*, const float*, float*,
                                     float*, int64_t, int64_t) {
  TORCH_CHECK(false, "dni: the AVX-512 LSTM step is not built for this target");
}

void lstm_window_backward_step_avx512(const float*, const float*, const float*, const float*,
                                      const float*, const float*, const float*, const float*,
                                      float*, float*, float*, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "dni: the AVX-512 LSTM step is not built for this target");
}

void lstm_window_recurrent_grad_avx512(const float*, const float*, float*, int64_t, int64_t) {
  TORCH_CHECK(false, "dni: the AVX-512 LSTM step is not built for this target");
}

}  // namespace dni::cpu
#endif
