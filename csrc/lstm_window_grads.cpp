#include "dni/lstm_window_grads.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/mm.h>

#include "dni/dense_linear.h"

namespace dni {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_window_gemm_grads(
    const at::Tensor& dz, const at::Tensor& dz_by_unit, const at::Tensor& h_prev_buffer,
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const at::Tensor& hs, bool compute_grad_x, const at::Tensor& grad_h0_given) {
  const int64_t steps = x.size(0), batch = x.size(1), in = x.size(2), hidden = h0.size(1);
  const at::Tensor grad_h0 =
      grad_h0_given.defined() ? grad_h0_given : dense_linear(dz.select(0, 0), w_hh.t());
  at::Tensor dz_flat = dz.view({steps * batch, 4 * hidden});
  at::Tensor grad_x = compute_grad_x ? dense_linear(dz_flat, w_ih.t()).view({steps, batch, in})
                                     : at::empty({0}, dz.options());
  at::Tensor x_flat = x.reshape({steps * batch, in});
  if (dz_by_unit.defined()) {
    // h_{t−1} (h0, then hs[0 … T−2]) as one [T·B, H] operand: a 1/(4 + I/H) share of
    // dz's size, copied once.
    at::Tensor h_prev = h_prev_buffer;  // a handle: cat_out takes a non-const one
    at::cat_out(h_prev, {h0.unsqueeze(0), hs.narrow(0, 0, steps - 1)});
    return {grad_x, grad_h0, dense_linear(dz_by_unit, x_flat.t()),
            dense_linear(dz_by_unit, h_prev.view({steps * batch, hidden}).t()),
            dz_by_unit.sum(1)};
  }
  // Otherwise the NN products go through dense_linear (see dense_linear.h); the weight
  // gradients (TN) stay with BLAS, which was as fast as oneDNN or faster there,
  // and h_{t−1} (h0 for t = 0, hs[t−1] after) is two GEMMs instead of a concatenation.
  at::Tensor grad_w_ih = at::mm(dz_flat.t(), x_flat);
  at::Tensor grad_w_hh = at::mm(dz.select(0, 0).t(), h0);
  if (steps > 1) {
    grad_w_hh.addmm_(dz.narrow(0, 1, steps - 1).reshape({(steps - 1) * batch, 4 * hidden}).t(),
                     hs.narrow(0, 0, steps - 1).reshape({(steps - 1) * batch, hidden}));
  }
  at::Tensor grad_bias = dz_flat.sum(0);
  return {grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace dni
