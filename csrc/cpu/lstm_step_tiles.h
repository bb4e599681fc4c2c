// How the one-pass LSTM steps (lstm_window_step_avx512.cpp, lstm_window_step_avx2.cpp)
// split a step into parallel tasks and register tiles, and the L2 prefetches of a
// tile's epilogue operands: the same for every ISA, with the tile sizes as parameters.
//
// Internal linkage on purpose: each step file includes this inside its own
// `#pragma GCC target` region, and a shared inline instance could be taken from the
// AVX-512 file's code for the AVX2 file's callers.
#pragma once

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace dni::cpu {
namespace {  // NOLINT(google-build-namespaces): see above

// Runs task(block, row_begin, row_end) for every (unit block, row group), split among
// the threads of the enclosing parallel region, each thread calling this with the same
// arguments (run_steps_in_one_region, lstm_window_steps.h); returns after the region's
// barrier, when every task is done. Groups of kRowsPerTask rows, several tiles, so that
// a task reuses its weight panel (from L2) across them; of one tile when that leaves
// fewer than two tasks per thread (many threads, few unit blocks). Tasks are numbered
// block-major and each thread takes a contiguous share, as at::parallel_for would, so
// that a thread keeps the same blocks' weight panels in its L2 from step to step (a
// dynamic schedule, one block at a time, was no faster on a 2-core Zen 3).
template <int64_t kTileRows, int64_t kRowsPerTask, typename Task>
inline void for_each_task(int64_t blocks, int64_t batch, Task&& task) {
  const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
  const bool few_tasks = blocks * ((batch + kRowsPerTask - 1) / kRowsPerTask) < 2 * threads;
  const int64_t rows = few_tasks ? kTileRows : kRowsPerTask;
  const int64_t groups = (batch + rows - 1) / rows, tasks = blocks * groups;
  for (int64_t i = tasks * me / threads; i < tasks * (me + 1) / threads; ++i) {
    const int64_t row = (i % groups) * rows;
    task(i / groups, row, std::min(row + rows, batch));
  }
#pragma omp barrier
}

// tile(std::integral_constant<int, rows>{}, row0) for a run-time rows in [1, kRows].
template <int kRows, typename Tile>
inline void call_tile(int64_t rows, int64_t row0, Tile& tile) {
  if constexpr (kRows > 1) {
    if (rows < kRows) return call_tile<kRows - 1>(rows, row0, tile);
  }
  tile(std::integral_constant<int, kRows>{}, row0);
}

// Calls tile(std::integral_constant<int, rows>, first_row) over rows [begin, end): tiles
// of kRows, then the rest. A rest under half a tile is split evenly with the last full
// tile instead (8 rows: 4 + 4, not 6 + 2). Measured with AVX2, whose 2-row tile has only
// 4 accumulator chains to cover the FMA latency: it ran at half the 6-row tile's rate
// (perf, T = 40, B = 32, H = 1024: 3.4 % of the window's samples for 6 % of the step
// products' rows, against 26 % for the other 94 %), and with the even split the AVX2
// forward op took 1–3 % less time at B = 32 (H = 256 and 1024, best and median of eight
// alternating rounds; the same bits), the backward op 0.6–1 % by the best times and the
// same within the noise by the medians. (AVX-512's 2-row tile has 8 chains; the split
// is unmeasured there.)
template <int kRows, typename Tile>
inline void for_each_tile(int64_t begin, int64_t end, Tile&& tile) {
  int64_t full = (end - begin) / kRows, rest = (end - begin) % kRows;
  if (full > 0 && rest > 0 && 2 * rest < kRows) {
    --full;
    rest += kRows;
  }
  int64_t row = begin;
  for (int64_t i = 0; i < full; ++i, row += kRows) {
    tile(std::integral_constant<int, kRows>{}, row);
  }
  while (rest > 0) {
    const int64_t rows = rest > kRows ? (rest + 1) / 2 : rest;
    call_tile<kRows>(rows, row, tile);
    row += rows;
    rest -= rows;
  }
}

// Requests into L2 `lines` cache lines (16 floats each) of each of a tile's kRows rows,
// ld floats apart. A tile's epilogue reads its rows of the gates and states, last
// touched a step or a whole product ago and a few lines per 1–4 KiB row, a pattern the
// hardware prefetcher does not follow; requested before the tile's product, they arrive
// while it runs. (The AVX-512 forward and backward steps took 2–5 % less time.)
template <int kRows>
inline void prefetch_tile_rows(const float* p, int64_t ld, int lines) {
  for (int r = 0; r < kRows; ++r) {
    for (int l = 0; l < lines; ++l) {
      _mm_prefetch(reinterpret_cast<const char*>(p + r * ld + 16 * l), _MM_HINT_T1);
    }
  }
}

// The same for the four gate slices (H floats apart) of the tile's rows of a [B, 4H]
// gates buffer, from `gates` (the first row's slice of gate i).
template <int kRows>
inline void prefetch_tile_gates(const float* gates, int64_t hidden, int lines) {
  for (int g = 0; g < 4; ++g) prefetch_tile_rows<kRows>(gates + g * hidden, 4 * hidden, lines);
}

}  // namespace
}  // namespace dni::cpu
