// The CUDA LSTM window ops (dni_kernels/reference.py, LSTM section): checks,
// allocation and the window-wide GEMMs (cuBLAS, through ATen) here; the sequential
// per-step kernels (recurrent GEMM + fused gate math) in lstm_window_kernels.cu.
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "dni/lstm_checks.h"
#include "dni/lstm_window_grads.h"
#include "host.h"
#include "lstm_params.h"

namespace dni::cuda {
namespace {

// An optional [B, H] operand (absent: data == nullptr).
Strided strided_or_null(const OptTensor& t) { return t.has_value() ? strided(*t) : Strided{}; }

std::tuple<Tensor, Tensor, Tensor> lstm_window_forward_cuda(const Tensor& x, const Tensor& h0,
                                                            const Tensor& c0,
                                                            const Tensor& w_ih,
                                                            const Tensor& w_hh,
                                                            const OptTensor& bias) {
  check_lstm_window(x, h0, c0, w_ih, w_hh, bias);
  check_cuda_dtype(x, "lstm_window_forward");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t steps = x.size(0), batch = x.size(1), in = x.size(2), hidden = h0.size(1);
  Tensor gates = at::empty({steps, batch, 4 * hidden}, x.options());
  Tensor hs = at::empty({steps, batch, hidden}, x.options());
  Tensor cs = at::empty_like(hs);
  // The input projection of all T steps: one cuBLAS GEMM, straight into gates.
  Tensor gates_flat = gates.view({steps * batch, 4 * hidden});
  Tensor x_flat = x.reshape({steps * batch, in});
  if (bias.has_value()) {
    at::addmm_out(gates_flat, *bias, x_flat, w_ih.t());
  } else {
    at::mm_out(gates_flat, x_flat, w_ih.t());
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_activation_type(x.scalar_type(), [&](auto type) {
    for (int64_t t = 0; t < steps; ++t) {
      LstmForwardStep p;
      p.batch = batch;
      p.hidden = hidden;
      p.h_prev = strided(t == 0 ? h0 : hs.select(0, t - 1));
      p.c_prev = strided(t == 0 ? c0 : cs.select(0, t - 1));
      p.w_hh = strided(w_hh);
      p.gates = gates.select(0, t).data_ptr();
      p.c = cs.select(0, t).data_ptr();
      p.h = hs.select(0, t).data_ptr();
      launch_lstm_forward_step<decltype(type)>(p, stream);
    }
  });
  return {hs, cs, gates};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_window_backward_cuda(
    const OptTensor& grad_hs, const OptTensor& grad_cs, const OptTensor& grad_h_end,
    const OptTensor& grad_c_end, const Tensor& x, const Tensor& h0, const Tensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const Tensor& hs, const Tensor& cs,
    const Tensor& gates, bool compute_grad_x) {
  check_lstm_window_backward(grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih,
                             w_hh, hs, cs, gates);
  check_cuda_dtype(x, "lstm_window_backward");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t steps = x.size(0), batch = x.size(1), hidden = h0.size(1);
  Tensor dz = at::empty_like(gates);
  // The ∂L/∂c carry stays float32 across all steps (rounded once, into grad_c0).
  Tensor dc = grad_c_end.has_value()
                  ? grad_c_end->to(at::kFloat, /*non_blocking=*/false, /*copy=*/true,
                                   at::MemoryFormat::Contiguous)
                  : at::zeros({batch, hidden}, x.options().dtype(at::kFloat));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_activation_type(x.scalar_type(), [&](auto type) {
    for (int64_t t = steps - 1; t >= 0; --t) {
      LstmBackwardStep p;
      p.batch = batch;
      p.hidden = hidden;
      const bool last = t == steps - 1;
      p.dz_next = last ? nullptr : dz.select(0, t + 1).data_ptr();
      p.w_hh = strided(w_hh);
      p.c_prev = strided(t == 0 ? c0 : cs.select(0, t - 1));
      p.grad_h_end = last ? strided_or_null(grad_h_end) : Strided{};
      p.grad_h = grad_hs.has_value() ? strided(grad_hs->select(0, t)) : Strided{};
      p.grad_c = grad_cs.has_value() ? strided(grad_cs->select(0, t)) : Strided{};
      p.gates = gates.select(0, t).data_ptr();
      p.c = cs.select(0, t).data_ptr();
      p.dc = dc.data_ptr<float>();
      p.dz = dz.select(0, t).data_ptr();
      launch_lstm_backward_step<decltype(type)>(p, stream);
    }
  });
  auto [grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_bias] =
      lstm_window_gemm_grads(dz, at::Tensor(), at::Tensor(), x, h0, w_ih, w_hh, hs,
                             compute_grad_x);
  return {grad_x, grad_h0, dc.to(x.scalar_type()), grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CUDA, m) {
  m.impl("lstm_window_forward", &lstm_window_forward_cuda);
  m.impl("lstm_window_backward", &lstm_window_backward_cuda);
}

}  // namespace dni::cuda
