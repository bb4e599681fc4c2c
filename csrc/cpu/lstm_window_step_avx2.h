// One LSTM step as one pass on CPUs with AVX2 and FMA but no AVX-512 (AMD Zen 2/3,
// Intel Haswell to Comet Lake): the AVX2 counterpart of lstm_window_step_avx512.h, with
// the same contracts (see there), sized for 16 vector registers of 8 floats.
//
// Used through lstm_window_steps.h.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace dni::cpu {

// The hidden size must be a multiple of this: the backward's register tile covers 16
// units (the forward's, 8 units of two gates at a time).
constexpr int64_t kLstmStepUnitBlockAvx2 = 16;

// True for float32 when the CPU has AVX2 and FMA, the library was built by GCC for
// x86-64, and the hidden size is a multiple of kLstmStepUnitBlockAvx2.
bool lstm_window_step_avx2_supported(const at::Tensor& w_hh);

// W_hh [4H, H] for lstm_window_forward_step_avx2: [H/8, 2, H, 16]: for each block of 8
// units, the (i, f) and then the (g, o) gates' 16 columns for each k.
at::Tensor lstm_pack_forward_weight_avx2(const at::Tensor& w_hh);

void lstm_window_forward_step_avx2(float* z_t, const float* h_prev, const float* w_packed,
                                   const float* c_prev, float* c_t, float* h_t,
                                   int64_t batch, int64_t hidden);

void lstm_window_backward_step_avx2(const float* dz_next, const float* dh_end,
                                    const float* w_packed, const float* gates_t,
                                    const float* c_t, const float* c_prev,
                                    const float* grad_h, const float* grad_c,
                                    float* dc_carry, float* dz_t, float* dz_by_unit,
                                    int64_t by_unit_ld, int64_t batch, int64_t hidden);

void lstm_window_recurrent_grad_avx2(const float* dz, const float* w_packed, float* dh,
                                     int64_t batch, int64_t hidden);

}  // namespace dni::cpu
