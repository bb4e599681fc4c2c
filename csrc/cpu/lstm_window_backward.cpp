// BPTT over one LSTM window on CPU (dni_kernels/reference.py::lstm_window_backward).
//
// Per step (t = T−1 … 0): the recurrent gradient dz_{t+1} W_hh, then the gate math
// (adding the in-window gradients), which writes dz_t into a [T, B, 4H] buffer and
// carries dc. With AVX-512 or AVX2 (float32, H a multiple of 64 or 16) the two are one
// pass per step (lstm_window_steps.h) that also writes dz unit-major for the weight
// gradients;
// otherwise a oneDNN or BLAS product and then one parallel gate loop. The parameter
// and input gradients are then a few large GEMMs over the whole window
// (lstm_window_grads.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "dni/dense_linear.h"
#include "dni/lstm_checks.h"
#include "dni/lstm_math.h"
#include "dni/lstm_window_grads.h"
#include "dni/static_switch.h"
#include "lstm_cpu.h"
#include "lstm_window_steps.h"
#include "vec_math.h"
#include "workspace.h"

namespace dni::cpu {
namespace {

// One step for rows [0, rows) (pointers at the first row): reads the activated gates,
// c_t, c_{t−1}, dh_t and the dc carry, plus the in-window gradients grad_hs[t]
// (kGradHs) and grad_cs[t] (kGradCs); writes dz_t and the new carry ∂L/∂c_{t−1}.
// Restrict pointers and by-value lengths let GCC vectorise the unit loop, tanh(c_t)
// included (vec_math.h).
template <typename scalar_t, bool kGradHs, bool kGradCs>
DNI_CPU_ISA_CLONES void step_backward_rows(
    const scalar_t* __restrict__ gates, const scalar_t* __restrict__ c,
    const scalar_t* __restrict__ c_prev, const scalar_t* __restrict__ dh,
    const scalar_t* __restrict__ grad_h, const scalar_t* __restrict__ grad_c,
    scalar_t* __restrict__ dc_carry, scalar_t* __restrict__ dz, int64_t rows,
    int64_t hidden) {
  for (int64_t b = 0; b < rows; ++b) {
    const scalar_t* __restrict__ ai = gates + b * 4 * hidden;
    const scalar_t* __restrict__ af = ai + hidden;
    const scalar_t* __restrict__ ag = ai + 2 * hidden;
    const scalar_t* __restrict__ ao = ai + 3 * hidden;
    scalar_t* __restrict__ dzi = dz + b * 4 * hidden;
    scalar_t* __restrict__ dzf = dzi + hidden;
    scalar_t* __restrict__ dzg = dzi + 2 * hidden;
    scalar_t* __restrict__ dzo = dzi + 3 * hidden;
    const int64_t row = b * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      scalar_t dc = dc_carry[row + j];
      if constexpr (kGradCs) dc += grad_c[row + j];
      scalar_t dh_total = dh[row + j];
      if constexpr (kGradHs) dh_total += grad_h[row + j];
      dc_carry[row + j] = lstm_unit_backward_given_tanh(
          ai[j], af[j], ag[j], ao[j], tanh_vec(c[row + j]), c_prev[row + j], dh_total, dc,
          dzi[j], dzf[j], dzg[j], dzo[j]);
    }
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_window_backward_cpu(
    const OptTensor& grad_hs, const OptTensor& grad_cs, const OptTensor& grad_h_end,
    const OptTensor& grad_c_end, const Tensor& x, const Tensor& h0, const Tensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const Tensor& hs, const Tensor& cs,
    const Tensor& gates, bool compute_grad_x) {
  check_lstm_window_backward(grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih,
                             w_hh, hs, cs, gates);
  TORCH_CHECK(x.device().is_cpu(), "dni: lstm_window_backward CPU kernel got x on ",
              x.device());
  const int64_t steps = x.size(0), batch = x.size(1), hidden = h0.size(1);
  auto opts = x.options();
  Tensor dz = workspace(WorkspaceSlot::kLstmGateGrads, {steps, batch, 4 * hidden}, opts);
  // dh holds the gradient reaching h_t from later steps (grad_h_end at t = T−1; only
  // read, so no copy); the in-window gradients are added inside the gate loop, and the
  // carry dc (written in place, then returned) starts at a copy of grad_c_end.
  Tensor dh = grad_h_end.has_value() ? grad_h_end->contiguous()
                                     : at::zeros({batch, hidden}, opts);
  Tensor dc_carry = grad_c_end.has_value()
                        ? grad_c_end->clone(at::MemoryFormat::Contiguous)
                        : at::zeros({batch, hidden}, opts);
  const Tensor grad_hs_contig = grad_hs.has_value() ? grad_hs->contiguous() : Tensor();
  const Tensor grad_cs_contig = grad_cs.has_value() ? grad_cs->contiguous() : Tensor();
  const Tensor c0_contig = c0.contiguous();
  Tensor dz_by_unit, h_prev_buffer, grad_h0;
  if (const LstmWindowSteps* one_pass = lstm_window_steps(w_hh, batch)) {
    dz_by_unit =
        workspace(WorkspaceSlot::kLstmGateGradsByUnit, {4 * hidden, steps * batch}, opts);
    h_prev_buffer = workspace(WorkspaceSlot::kLstmHiddenPrev, {steps, batch, hidden}, opts);
    const Tensor w_hh_packed = lstm_pack_unit_blocks(w_hh, one_pass->backward_unit_block);
    // Raw pointers: every tensor here is contiguous, and a select per step cost more
    // than the step's gate math at small sizes.
    const int64_t state = batch * hidden;
    const float* gates_ptr = gates.data_ptr<float>();
    const float* cs_ptr = cs.data_ptr<float>();
    const float* grad_h = grad_hs.has_value() ? grad_hs_contig.data_ptr<float>() : nullptr;
    const float* grad_c = grad_cs.has_value() ? grad_cs_contig.data_ptr<float>() : nullptr;
    float* dz_ptr = dz.data_ptr<float>();
    const float* w_ptr = w_hh_packed.data_ptr<float>();
    const float* c0_ptr = c0_contig.data_ptr<float>();
    const float* dh_end = dh.data_ptr<float>();
    float* dc_ptr = dc_carry.data_ptr<float>();
    float* by_unit = dz_by_unit.data_ptr<float>();
    grad_h0 = at::empty({batch, hidden}, opts);
    float* grad_h0_ptr = grad_h0.data_ptr<float>();
    run_steps_in_one_region([&] {
      for (int64_t t = steps - 1; t >= 0; --t) {
        one_pass->backward_step(
            t < steps - 1 ? dz_ptr + (t + 1) * 4 * state : nullptr, dh_end, w_ptr,
            gates_ptr + t * 4 * state, cs_ptr + t * state,
            t == 0 ? c0_ptr : cs_ptr + (t - 1) * state, grad_h ? grad_h + t * state : nullptr,
            grad_c ? grad_c + t * state : nullptr, dc_ptr, dz_ptr + t * 4 * state,
            by_unit + t * batch, steps * batch, batch, hidden);
      }
      // δ_start's h part, dz_0 W_hh, with the steps' tiles and packed weight: alone, the
      // AVX-512 ones ran this [B, 4H] × [4H, H] product at 219–232 GFLOP/s against
      // oneDNN's 142–220 (B = 32 and 256, H = 256 and 1024), and inside the window
      // oneDNN's call was slower still (0.25 ms at B = 32, H = 256: 67 GFLOP/s).
      one_pass->recurrent_grad(dz_ptr, w_ptr, grad_h0_ptr, batch, hidden);
    });
  } else {
    const Tensor w_hh_t_packed = prepack_weight(w_hh.t(), batch, steps - 1);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dni_lstm_window_backward_cpu", [&] {
      DNI_BOOL_SWITCH(grad_hs.has_value(), kGradHs, [&] {
        DNI_BOOL_SWITCH(grad_cs.has_value(), kGradCs, [&] {
          for (int64_t t = steps - 1; t >= 0; --t) {
            if (t < steps - 1) dh = dense_linear(dz.select(0, t + 1), w_hh_t_packed);
            const scalar_t* c_prev = t == 0 ? c0_contig.data_ptr<scalar_t>()
                                            : cs.select(0, t - 1).data_ptr<scalar_t>();
            const scalar_t* c_t = cs.select(0, t).data_ptr<scalar_t>();
            const scalar_t* dh_ptr = dh.data_ptr<scalar_t>();
            const scalar_t* grad_h =
                kGradHs ? grad_hs_contig.select(0, t).data_ptr<scalar_t>() : nullptr;
            const scalar_t* grad_c =
                kGradCs ? grad_cs_contig.select(0, t).data_ptr<scalar_t>() : nullptr;
            const scalar_t* gates_t = gates.select(0, t).data_ptr<scalar_t>();
            scalar_t* dc_ptr = dc_carry.data_ptr<scalar_t>();
            scalar_t* dz_t = dz.select(0, t).data_ptr<scalar_t>();
            at::parallel_for(0, batch, lstm_row_grain(hidden), [=](int64_t begin, int64_t end) {
              const int64_t row = begin * hidden;
              step_backward_rows<scalar_t, kGradHs, kGradCs>(
                  gates_t + 4 * row, c_t + row, c_prev + row, dh_ptr + row,
                  kGradHs ? grad_h + row : nullptr, kGradCs ? grad_c + row : nullptr,
                  dc_ptr + row, dz_t + 4 * row, end - begin, hidden);
            });
          }
        });
      });
    });
  }
  // δ_start = (dz_0 W_hh, dc carried past step 0); the rest are whole-window GEMMs.
  auto [grad_x, grad_h_start, grad_w_ih, grad_w_hh, grad_bias] =
      lstm_window_gemm_grads(dz, dz_by_unit, h_prev_buffer, x, h0, w_ih, w_hh, hs,
                             compute_grad_x, grad_h0);
  return {grad_x, grad_h_start, dc_carry, grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CPU, m) { m.impl("lstm_window_backward", &lstm_window_backward_cpu); }

}  // namespace dni::cpu
