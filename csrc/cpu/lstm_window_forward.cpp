// The LSTM window forward on CPU (dni_kernels/reference.py::lstm_window_forward).
//
// The input projection of all T steps is ONE product that becomes `gates`
// (x W_ihᵀ + b for [T·B, I]). Each step then adds the recurrent product h_{t−1} W_hhᵀ,
// activates the gates in place (the backward reuses them) and writes c_t and h_t: with
// AVX-512 or AVX2 (float32, H a multiple of 64 or 16) as one pass
// (lstm_window_steps.h), otherwise as the product (see dense_linear.h) and one
// parallel loop.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "dni/dense_linear.h"
#include "dni/large_output.h"
#include "dni/lstm_checks.h"
#include "dni/lstm_math.h"
#include "lstm_cpu.h"
#include "lstm_window_steps.h"
#include "vec_math.h"

namespace dni::cpu {
namespace {

// Rows [0, rows) of one step. z [rows, 4H] holds x_t W_ihᵀ + b on entry and the
// activated gates on exit; zh [rows, 4H] is h_{t−1} W_hhᵀ. Restrict pointers and a
// by-value length let GCC vectorise the unit loop (z is read and written at the same
// index only).
template <typename scalar_t>
DNI_CPU_ISA_CLONES void step_forward_rows(scalar_t* z, const scalar_t* __restrict__ zh,
                                          const scalar_t* __restrict__ c_prev,
                                          scalar_t* __restrict__ c, scalar_t* __restrict__ h,
                                          int64_t rows, int64_t hidden) {
  for (int64_t b = 0; b < rows; ++b) {
    scalar_t* __restrict__ zi = z + b * 4 * hidden;
    scalar_t* __restrict__ zf = zi + hidden;
    scalar_t* __restrict__ zg = zi + 2 * hidden;
    scalar_t* __restrict__ zo = zi + 3 * hidden;
    const scalar_t* __restrict__ hi = zh + b * 4 * hidden;
    const scalar_t* __restrict__ cp = c_prev + b * hidden;
    scalar_t* __restrict__ cb = c + b * hidden;
    scalar_t* __restrict__ hb = h + b * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      const scalar_t i = sigmoid_vec(zi[j] + hi[j]);
      const scalar_t f = sigmoid_vec(zf[j] + hi[hidden + j]);
      const scalar_t g = tanh_vec(zg[j] + hi[2 * hidden + j]);
      const scalar_t o = sigmoid_vec(zo[j] + hi[3 * hidden + j]);
      zi[j] = i;
      zf[j] = f;
      zg[j] = g;
      zo[j] = o;
      const scalar_t c_new = lstm_cell_next(i, f, g, cp[j]);
      cb[j] = c_new;
      hb[j] = o * tanh_vec(c_new);
    }
  }
}

std::tuple<Tensor, Tensor, Tensor> lstm_window_forward_cpu(const Tensor& x, const Tensor& h0,
                                                           const Tensor& c0,
                                                           const Tensor& w_ih,
                                                           const Tensor& w_hh,
                                                           const OptTensor& bias) {
  check_lstm_window(x, h0, c0, w_ih, w_hh, bias);
  TORCH_CHECK(x.device().is_cpu(), "dni: lstm_window_forward CPU kernel got x on ",
              x.device());
  const int64_t steps = x.size(0), batch = x.size(1), in = x.size(2), hidden = h0.size(1);
  auto opts = x.options();
  Tensor gates = dense_linear(x.reshape({steps * batch, in}), w_ih, bias)
                     .out.view({steps, batch, 4 * hidden});
  Tensor hs = empty_large_output({steps, batch, hidden}, opts);
  Tensor cs = empty_large_output({steps, batch, hidden}, opts);
  const Tensor c0_contig = c0.contiguous();
  if (const LstmWindowSteps* one_pass = lstm_window_steps(w_hh, batch)) {
    const Tensor h0_contig = h0.contiguous();  // the portable path's product takes views
    const Tensor w_hh_packed = one_pass->pack_forward_weight(w_hh);
    float* z = gates.data_ptr<float>();
    float* c = cs.data_ptr<float>();
    float* h = hs.data_ptr<float>();
    const float* h0_ptr = h0_contig.data_ptr<float>();
    const float* c0_ptr = c0_contig.data_ptr<float>();
    const float* w_ptr = w_hh_packed.data_ptr<float>();
    run_steps_in_one_region([&] {
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t prev = (t - 1) * batch * hidden;
        one_pass->forward_step(z + t * batch * 4 * hidden, t == 0 ? h0_ptr : h + prev, w_ptr,
                               t == 0 ? c0_ptr : c + prev, c + t * batch * hidden,
                               h + t * batch * hidden, batch, hidden);
      }
    });
    return {hs, cs, gates};
  }
  const Tensor w_hh_packed = prepack_weight(w_hh, batch, steps);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dni_lstm_window_forward_cpu", [&] {
    scalar_t* z = gates.data_ptr<scalar_t>();
    scalar_t* c = cs.data_ptr<scalar_t>();
    scalar_t* h = hs.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const Tensor zh = dense_linear(t == 0 ? h0 : hs.select(0, t - 1), w_hh_packed);
      TORCH_INTERNAL_ASSERT(zh.is_contiguous());  // read below as [B, 4H] rows
      const scalar_t* zh_ptr = zh.data_ptr<scalar_t>();
      const scalar_t* c_prev =
          t == 0 ? c0_contig.data_ptr<scalar_t>() : c + (t - 1) * batch * hidden;
      scalar_t* z_t = z + t * batch * 4 * hidden;
      scalar_t* c_t = c + t * batch * hidden;
      scalar_t* h_t = h + t * batch * hidden;
      at::parallel_for(0, batch, lstm_row_grain(hidden), [=](int64_t begin, int64_t end) {
        step_forward_rows<scalar_t>(z_t + begin * 4 * hidden, zh_ptr + begin * 4 * hidden,
                                    c_prev + begin * hidden, c_t + begin * hidden,
                                    h_t + begin * hidden, end - begin, hidden);
      });
    }
  });
  return {hs, cs, gates};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CPU, m) { m.impl("lstm_window_forward", &lstm_window_forward_cpu); }

}  // namespace dni::cpu
