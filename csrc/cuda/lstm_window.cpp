// The CUDA LSTM window ops (dni_kernels/reference.py, LSTM section): checks,
// allocation and the window-wide GEMMs (cuBLAS, through ATen) here; the sequential
// per-step kernels (recurrent GEMM + fused gate math) in lstm_window_kernels.cu.
//
// Where each step's recurrent GEMM runs ($DNI_CUDA_LSTM_STEP, read on every call;
// default "auto"):
//   fused   inside the step kernel (one launch per step)
//   cublas  cuBLAS, then the step kernel's gate math (two launches per step)
//   auto    cublas from kCublasStepMinMacs multiply-adds per step's product, else fused.
// Measured on an H100 (float32, window forward + backward, benchmarks/bench_lstm.py):
// at H = 1024 cuBLAS won at every size (T = 40, B = 256: 12.2 against 32.4 ms, 0.84
// against 0.31 of the sgemm roofline; T = 8, B = 32: 1.12 against 1.56 ms); at H = 256
// the fused form won at T = 8 (B = 32: 0.57 against 0.75 ms) and was mixed at T = 40,
// B = 256 (2.94 against 3.12 ms in one run, 2.90 against 2.32 in another).
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "dni/lstm_checks.h"
#include "dni/lstm_window_grads.h"
#include "dni/settings.h"
#include "host.h"
#include "lstm_params.h"

namespace dni::cuda {
namespace {

// An optional [B, H] operand (absent: data == nullptr).
Strided strided_or_null(const OptTensor& t) { return t.has_value() ? strided(*t) : Strided{}; }

constexpr int64_t kCublasStepMinMacs = int64_t{1} << 27;  // B = 32, H = 1024

LstmStepGemm choose_step_gemm(int64_t batch, int64_t hidden) {
  const std::string mode = env_setting("DNI_CUDA_LSTM_STEP", {"fused", "cublas"});
  if (mode == "auto") {
    return batch * 4 * hidden * hidden >= kCublasStepMinMacs ? LstmStepGemm::kCublas
                                                             : LstmStepGemm::kInKernel;
  }
  return mode == "cublas" ? LstmStepGemm::kCublas : LstmStepGemm::kInKernel;
}

// Step t of a [T, rows, cols] tensor as the kernels' plain parameters. Tensor::select
// gives the same at about 3 µs of host time per call; with 11 per step, at T = 8,
// B = 32, H = 256 on an H100 that host time, not the GPU, set the window's time.
void* step_data(const Tensor& t, int64_t step) {
  return static_cast<char*>(t.data_ptr()) + step * t.stride(0) * t.element_size();
}

Strided step_strided(const Tensor& t, int64_t step) {
  return {step_data(t, step), t.stride(1), t.stride(2)};
}

// kCublas's float32 product buffer ([rows, cols]); undefined with kInKernel.
Tensor recurrent_buffer(LstmStepGemm gemm, const Tensor& like, int64_t rows, int64_t cols) {
  return gemm == LstmStepGemm::kCublas ? at::empty({rows, cols}, like.options().dtype(at::kFloat))
                                       : Tensor();
}

std::tuple<Tensor, Tensor, Tensor> lstm_window_forward_cuda(const Tensor& x, const Tensor& h0,
                                                            const Tensor& c0,
                                                            const Tensor& w_ih,
                                                            const Tensor& w_hh,
                                                            const OptTensor& bias) {
  check_lstm_window(x, h0, c0, w_ih, w_hh, bias);
  check_cuda_dtype(x, "lstm_window_forward");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t steps = x.size(0), batch = x.size(1), in = x.size(2), hidden = h0.size(1);
  const LstmStepGemm gemm = choose_step_gemm(batch, hidden);
  Tensor recurrent = recurrent_buffer(gemm, x, batch, 4 * hidden);  // h_{t−1} W_hhᵀ
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
      if (gemm == LstmStepGemm::kCublas) {
        float_product_out(recurrent, t == 0 ? h0 : hs.select(0, t - 1), w_hh.t());
        p.recurrent = recurrent.data_ptr<float>();
      }
      p.batch = batch;
      p.hidden = hidden;
      p.h_prev = t == 0 ? strided(h0) : step_strided(hs, t - 1);
      p.c_prev = t == 0 ? strided(c0) : step_strided(cs, t - 1);
      p.w_hh = strided(w_hh);
      p.gates = step_data(gates, t);
      p.c = step_data(cs, t);
      p.h = step_data(hs, t);
      launch_lstm_forward_step<decltype(type)>(p, gemm, stream);
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
  const LstmStepGemm gemm = choose_step_gemm(batch, hidden);
  Tensor dz = at::empty_like(gates);
  Tensor dh_next = recurrent_buffer(gemm, x, batch, hidden);  // dz_{t+1} W_hh
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
      if (!last && gemm == LstmStepGemm::kCublas) {
        float_product_out(dh_next, dz.select(0, t + 1), w_hh);
        p.dh_next = dh_next.data_ptr<float>();
      } else if (!last) {
        p.dz_next = step_data(dz, t + 1);
      }
      p.w_hh = strided(w_hh);
      p.c_prev = t == 0 ? strided(c0) : step_strided(cs, t - 1);
      p.grad_h_end = last ? strided_or_null(grad_h_end) : Strided{};
      p.grad_h = grad_hs.has_value() ? step_strided(*grad_hs, t) : Strided{};
      p.grad_c = grad_cs.has_value() ? step_strided(*grad_cs, t) : Strided{};
      p.gates = step_data(gates, t);
      p.c = step_data(cs, t);
      p.dc = dc.data_ptr<float>();
      p.dz = step_data(dz, t);
      launch_lstm_backward_step<decltype(type)>(p, gemm, stream);
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
