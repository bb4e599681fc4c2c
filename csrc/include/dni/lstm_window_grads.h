// The window-wide part of the LSTM BPTT, shared by the CPU and CUDA backward kernels:
// once the sequential loop has produced dz [T, B, 4H] (the pre-activation gradients
// of every step), the input, weight and bias gradients and δ_start's h part are a few
// large library GEMMs over all T·B rows (BLAS on CPU, cuBLAS on a GPU), never per step.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace dni {

// Returns (grad_x [T, B, I], grad_h0 = dz_0 W_hh, grad_w_ih, grad_w_hh, grad_bias),
// all contiguous, in dz's dtype; without compute_grad_x, grad_x is an empty tensor. dz
// must be contiguous. dz_by_unit, when defined, is the same gradients unit-major
// ([4H, T·B], contiguous) as the CPU's AVX-512 and AVX2 backward steps write them: the
// weight gradients then run as NN products (dense_linear) instead of transposed ones, and
// h_prev_buffer ([T, B, H], contiguous, dz's dtype) receives h_{t−1} for all t as
// their one operand. The CPU passes a retained workspace there: a fresh buffer faulted
// in its pages on every call. grad_h0, when defined, is dz_0 W_hh already computed (the
// CPU's one-pass backward steps do it with their tiles) and is returned as is.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_window_gemm_grads(
    const at::Tensor& dz, const at::Tensor& dz_by_unit, const at::Tensor& h_prev_buffer,
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const at::Tensor& hs, bool compute_grad_x, const at::Tensor& grad_h0 = at::Tensor());

}  // namespace dni
