// The LSTM window forward on CPU (dni_kernels/reference.py::lstm_window_forward).
//
// The input projection of all T steps is ONE GEMM written straight into `gates`
// (x W_ihᵀ + b for [T·B, I]); each step then adds h_{t−1} W_hhᵀ into its slice with
// one in-place GEMM and runs one parallel loop for all gate math, which overwrites the
// pre-activations with the activated gates that the backward reuses.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "dni/lstm_checks.h"
#include "dni/lstm_math.h"
#include "lstm_cpu.h"

namespace dni::cpu {
namespace {

// Gate math for one step. On entry z [B, 4H] holds σ of the pre-activations, with the
// g block's pre-activations doubled first so that g = tanh(z_g) = 2σ(2z_g) − 1: the
// transcendentals of all four gates are one vectorised ATen sigmoid pass, and this loop
// is left with one tanh per unit. Writes g back, and c, h [B, H].
template <typename scalar_t>
void gate_math(scalar_t* z, const scalar_t* c_prev, scalar_t* c, scalar_t* h,
               int64_t batch, int64_t hidden) {
  at::parallel_for(0, batch, lstm_row_grain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* zi = z + b * 4 * hidden;
      const scalar_t* zf = zi + hidden;
      scalar_t* zg = z + b * 4 * hidden + 2 * hidden;
      const scalar_t* zo = zg + hidden;
      const int64_t row = b * hidden;
      for (int64_t j = 0; j < hidden; ++j) {
        const LstmGates<scalar_t> a{zi[j], zf[j], tanh_from_sigmoid_of_double(zg[j]), zo[j]};
        zg[j] = a.g;
        lstm_state_update(a, c_prev[row + j], c[row + j], h[row + j]);
      }
    }
  });
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
  Tensor gates = at::empty({steps, batch, 4 * hidden}, opts);
  Tensor hs = at::empty({steps, batch, hidden}, opts);
  Tensor cs = at::empty({steps, batch, hidden}, opts);
  Tensor gates_flat = gates.view({steps * batch, 4 * hidden});
  Tensor x_flat = x.reshape({steps * batch, in});
  if (bias.has_value()) {
    at::addmm_out(gates_flat, *bias, x_flat, w_ih.t());
  } else {
    at::mm_out(gates_flat, x_flat, w_ih.t());
  }
  const Tensor c0_contig = c0.contiguous();
  const Tensor w_hh_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dni_lstm_window_forward_cpu", [&] {
    for (int64_t t = 0; t < steps; ++t) {
      Tensor z = gates.select(0, t);
      z.addmm_(t == 0 ? h0 : hs.select(0, t - 1), w_hh_t);
      z.narrow(1, 2 * hidden, hidden).mul_(2.0);
      z.sigmoid_();
      const scalar_t* c_prev = t == 0 ? c0_contig.data_ptr<scalar_t>()
                                      : cs.select(0, t - 1).data_ptr<scalar_t>();
      gate_math<scalar_t>(z.data_ptr<scalar_t>(), c_prev,
                          cs.select(0, t).data_ptr<scalar_t>(),
                          hs.select(0, t).data_ptr<scalar_t>(), batch, hidden);
    }
  });
  return {hs, cs, gates};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CPU, m) { m.impl("lstm_window_forward", &lstm_window_forward_cpu); }

}  // namespace dni::cpu
