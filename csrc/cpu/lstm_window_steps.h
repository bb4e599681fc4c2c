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

#include <cstdint>

namespace dni::cpu {

struct LstmWindowSteps {
  const char* name;
  at::Tensor (*pack_forward_weight)(const at::Tensor& w_hh);
  at::Tensor (*pack_backward_weight)(const at::Tensor& w_hh);
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

}  // namespace dni::cpu
