// The LSTM window forward on CPU (dni_kernels/reference.py::lstm_window_forward).
//
// The input projection of all T steps is ONE product that becomes `gates`
// (x W_ihᵀ + b for [T·B, I]); each step then adds h_{t−1} W_hhᵀ into its slice (one
// product, see dense_linear.h), activates the gates in place (the backward reuses
// them) and updates the cell: two ATen sigmoid passes and two parallel loops.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "dni/dense_linear.h"
#include "dni/lstm_checks.h"
#include "dni/lstm_math.h"
#include "lstm_cpu.h"

namespace dni::cpu {
namespace {

// The per-step loops carry no transcendentals, so they vectorise; all of those are
// ATen sigmoid passes (runtime-dispatched SIMD): tanh(v) = 2σ(2v) − 1 gives the g gate
// and tanh(c_t). (ATen's own tanh ran ~10x slower than its sigmoid here.)
//
// Row kernels take restrict pointers and a by-value length: that is what lets GCC
// vectorise them (pointers captured by reference in a lambda may alias the stores).
template <typename scalar_t>
inline void cell_update_row(const scalar_t* __restrict__ zi, const scalar_t* __restrict__ zf,
                            scalar_t* __restrict__ zg, const scalar_t* __restrict__ c_prev,
                            scalar_t* __restrict__ c, scalar_t* __restrict__ two_c, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t g = tanh_from_sigmoid_of_double(zg[j]);
    zg[j] = g;
    c[j] = zf[j] * c_prev[j] + zi[j] * g;
    two_c[j] = scalar_t(2) * c[j];
  }
}

template <typename scalar_t>
inline void cell_output_row(const scalar_t* __restrict__ zo, scalar_t* __restrict__ h,
                            int64_t n) {
  for (int64_t j = 0; j < n; ++j) h[j] = zo[j] * tanh_from_sigmoid_of_double(h[j]);
}

// On entry z [B, 4H] holds σ of the pre-activations, the g block's doubled first.
// Writes g back, c_t, and 2c_t into h (for the σ pass that follows).
template <typename scalar_t>
void cell_update(scalar_t* z, const scalar_t* c_prev, scalar_t* c, scalar_t* h,
                 int64_t batch, int64_t hidden) {
  at::parallel_for(0, batch, lstm_row_grain(hidden), [=](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* zb = z + b * 4 * hidden;
      cell_update_row(zb, zb + hidden, zb + 2 * hidden, c_prev + b * hidden, c + b * hidden,
                      h + b * hidden, hidden);
    }
  });
}

// h holds σ(2c_t) on entry: h_t = o · tanh(c_t).
template <typename scalar_t>
void cell_output(const scalar_t* z, scalar_t* h, int64_t batch, int64_t hidden) {
  at::parallel_for(0, batch, lstm_row_grain(hidden), [=](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      cell_output_row(z + b * 4 * hidden + 3 * hidden, h + b * hidden, hidden);
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
  Tensor gates = dense_linear(x.reshape({steps * batch, in}), w_ih, bias)
                     .out.view({steps, batch, 4 * hidden});
  Tensor hs = at::empty({steps, batch, hidden}, opts);
  Tensor cs = at::empty({steps, batch, hidden}, opts);
  const Tensor c0_contig = c0.contiguous();
  const Tensor w_hh_packed = prepack_weight(w_hh, batch, steps);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dni_lstm_window_forward_cpu", [&] {
    for (int64_t t = 0; t < steps; ++t) {
      Tensor z = gates.select(0, t);
      z.add_(dense_linear(t == 0 ? h0 : hs.select(0, t - 1), w_hh_packed));
      z.narrow(1, 2 * hidden, hidden).mul_(2.0);
      z.sigmoid_();
      const scalar_t* c_prev = t == 0 ? c0_contig.data_ptr<scalar_t>()
                                      : cs.select(0, t - 1).data_ptr<scalar_t>();
      Tensor h = hs.select(0, t);
      scalar_t* zp = z.data_ptr<scalar_t>();
      cell_update<scalar_t>(zp, c_prev, cs.select(0, t).data_ptr<scalar_t>(),
                            h.data_ptr<scalar_t>(), batch, hidden);
      h.sigmoid_();
      cell_output<scalar_t>(zp, h.data_ptr<scalar_t>(), batch, hidden);
    }
  });
  return {hs, cs, gates};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CPU, m) { m.impl("lstm_window_forward", &lstm_window_forward_cpu); }

}  // namespace dni::cpu
