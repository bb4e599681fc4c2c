// Which one-pass LSTM steps the CPU window kernels take: the recurrent product and the
// gate math of each step in one parallel pass, in a version per ISA
// (lstm_window_step_avx512.h, lstm_window_step_avx2.h), or none, for the portable path
// (a oneDNN or BLAS product per step and one gate loop).
//
// $DNI_CPU_LSTM_STEP (read on every call) = auto (default: AVX-512 where the CPU has it,
// else AVX2 where it was measured faster than the portable path, see
// lstm_window_steps.cpp), avx512, avx2, or loop (the portable path). A forced ISA that
// the CPU or w_hh (float32, H a multiple of the ISA's unit block) cannot take raises.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>

namespace dni::cpu {

// Each step function must be called inside run_steps_in_one_region (below).
struct LstmWindowSteps {
  at::Tensor (*pack_forward_weight)(const at::Tensor& w_hh);
  // The backward's weight is lstm_pack_unit_blocks(w_hh, backward_unit_block).
  int64_t backward_unit_block;
  void (*forward_step)(float* z_t, const float* h_prev, const float* w_packed,
                       const float* c_prev, float* c_t, float* h_t, int64_t batch,
                       int64_t hidden);
  void (*backward_step)(const float* dz_next, const float* dh_end, const float* w_packed,
                        const float* gates_t, const float* c_t, const float* c_prev,
                        const float* grad_h, const float* grad_c, float* dc_carry,
                        float* dz_t, float* dz_by_unit, int64_t by_unit_ld, int64_t batch,
                        int64_t hidden);
  void (*recurrent_grad)(const float* dz, const float* w_packed, float* dh, int64_t batch,
                         int64_t hidden);
};

// The steps for a window of `batch` rows with this w_hh on this CPU, or nullptr for the
// portable path.
const LstmWindowSteps* lstm_window_steps(const at::Tensor& w_hh, int64_t batch);

// W_hh [4H, H] laid out for the backward steps: [H/block, 4H, block], `block`
// consecutive units for each k (H a multiple of block).
at::Tensor lstm_pack_unit_blocks(const at::Tensor& w_hh, int64_t block);

// Runs steps() on every thread of one parallel region. A window's step functions are
// called inside it, by every thread with the same arguments: each splits its tasks
// among the region's threads and ends with a barrier, so that a window pays one fork
// and join instead of one per step (7–13 µs each on a 2-core Zen 3, timed by rdtsc
// around the step's tasks). There, by the lower quartile of ten alternating rounds,
// the forward op took 3–6 % less time at B = 32, H = 256 (T = 8 and 40) and the
// backward 4 % less at T = 40; at B = 256 the change was within the noise. The whole
// DNI window (bench_lstm.py's `fused`) took 0.7–3 % less at T = 8 and 40, B = 32,
// H = 256 (best and median of 30 alternating rounds).
template <typename Steps>
void run_steps_in_one_region(Steps&& steps) {
  const int threads = at::get_num_threads();
#pragma omp parallel num_threads(threads)
  steps();
}

}  // namespace dni::cpu
