// One LSTM step as one pass on CPUs with AVX-512 (float32): the recurrent product and
// the gate math of each block of units run together, while the products' results are
// still in registers, one barrier per step in a parallel region that spans the window.
// The portable path (a oneDNN or BLAS product, then a separate gate loop) costs two
// parallel regions and a pass over the [B, 4H] products per step, plus the product
// call's own setup.
//
// Used by lstm_window_forward.cpp and lstm_window_backward.cpp through
// lstm_window_steps.h (which also holds the AVX2 version), inside its
// run_steps_in_one_region; they keep the portable path otherwise.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace dni::cpu {

// The units handled by one register tile: 64 (4 vectors of 16 floats).
constexpr int64_t kLstmStepUnitBlock = 64;

// True for float32 when the CPU has AVX-512 (F, VL, BW, DQ) and FMA, the library was
// built by GCC for x86-64, and the hidden size is a multiple of kLstmStepUnitBlock.
bool lstm_window_step_avx512_supported(const at::Tensor& w_hh);

// W_hh [4H, H] laid out for lstm_window_forward_step_avx512: [H/16, H, 4, 16], the
// four gates of 16 units side by side for each k.
at::Tensor lstm_pack_forward_weight(const at::Tensor& w_hh);

// Forward step t for all `batch` rows. z_t [B, 4H] holds x_t W_ihᵀ + b on entry and the
// activated gates on exit; writes c_t and h_t [B, H].
void lstm_window_forward_step_avx512(float* z_t, const float* h_prev, const float* w_packed,
                                     const float* c_prev, float* c_t, float* h_t,
                                     int64_t batch, int64_t hidden);

// Backward step t: dh_t = dz_{t+1} W_hh, or dh_end [B, H] for the last step (dz_next
// null), plus grad_h_t; then the gate math (as cpu::step_backward_rows). grad_h and
// grad_c may be null. dc_carry [B, H] holds ∂L/∂c_t from the later steps on entry and
// ∂L/∂c_{t−1} on exit; writes dz_t [B, 4H], and its transpose into columns
// [0, B) of dz_by_unit (rows 4H, row stride by_unit_ld), the layout in which the weight
// gradients' products run fastest (lstm_window_grads.h).
void lstm_window_backward_step_avx512(const float* dz_next, const float* dh_end,
                                      const float* w_packed, const float* gates_t,
                                      const float* c_t, const float* c_prev,
                                      const float* grad_h, const float* grad_c,
                                      float* dc_carry, float* dz_t, float* dz_by_unit,
                                      int64_t by_unit_ld, int64_t batch, int64_t hidden);

// dh = dz W_hh for dz [B, 4H] and the backward's packed weight: the product of
// lstm_window_backward_step_avx512 without its gate math, for δ_start's h part
// (dz_0 W_hh), which no step follows. dh is [B, H], contiguous.
void lstm_window_recurrent_grad_avx512(const float* dz, const float* w_packed, float* dh,
                                       int64_t batch, int64_t hidden);

}  // namespace dni::cpu
