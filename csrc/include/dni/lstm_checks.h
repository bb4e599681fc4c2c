// Argument validation for the LSTM window ops, shared by every backend. Every check
// runs before anything is allocated or written; messages name the argument.
#pragma once

#include <ATen/core/Tensor.h>

#include "dni/checks.h"

namespace dni {

// x [T >= 1, B, I], h0/c0 [B, H], w_ih [4H, I], w_hh [4H, H], bias [4H]: one device,
// one floating dtype (float32/float64 on CPU; float16/bfloat16 too on GPUs, and on
// CPU with `half_on_cpu`: the Triton twins, which run CPU tensors in the interpreter).
void check_lstm_window(const Tensor& x, const Tensor& h0, const Tensor& c0,
                       const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias,
                       bool half_on_cpu = false);

// The window's inputs as above, its saved forward outputs hs/cs [T, B, H] and gates
// [T, B, 4H] (contiguous, as the forward made them), the optional in-window gradients
// grad_hs/grad_cs [T, B, H] and boundary gradients grad_h_end/grad_c_end [B, H].
void check_lstm_window_backward(const OptTensor& grad_hs, const OptTensor& grad_cs,
                                const OptTensor& grad_h_end, const OptTensor& grad_c_end,
                                const Tensor& x, const Tensor& h0, const Tensor& c0,
                                const Tensor& w_ih, const Tensor& w_hh, const Tensor& hs,
                                const Tensor& cs, const Tensor& gates,
                                bool half_on_cpu = false);

// The bootstrapped window's SG heads: sg_weight [F, F] with F = H, or 2H when the SG
// reads (h, c); optional sg_bias [F]; optional aux head aux_weight [F, F], aux_bias [F].
void check_lstm_sg(const Tensor& h0, const Tensor& sg_weight, const OptTensor& sg_bias,
                   const OptTensor& aux_weight, const OptTensor& aux_bias,
                   double sg_scale, bool sg_reads_cell, double aux_loss_weight);

}  // namespace dni
