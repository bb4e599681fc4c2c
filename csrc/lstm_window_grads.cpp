#include "dni/lstm_window_grads.h"

#include <ATen/ops/mm.h>

#include "dni/dense_linear.h"

namespace dni {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_window_gemm_grads(
    const at::Tensor& dz, const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const at::Tensor& hs, bool compute_grad_x) {
  const int64_t steps = x.size(0), batch = x.size(1), in = x.size(2), hidden = h0.size(1);
  // The NN products go through dense_linear (oneDNN for large float32 on the CPU);
  // the weight gradients (TN) stay with BLAS, which was as fast or faster there.
  at::Tensor grad_h0 = dense_linear(dz.select(0, 0), w_hh.t());
  at::Tensor dz_flat = dz.view({steps * batch, 4 * hidden});
  at::Tensor grad_x = compute_grad_x ? dense_linear(dz_flat, w_ih.t()).view({steps, batch, in})
                                     : at::empty({0}, dz.options());
  at::Tensor grad_w_ih = at::mm(dz_flat.t(), x.reshape({steps * batch, in}));
  // h_{t−1} is h0 for t = 0 and hs[t−1] after: two GEMMs instead of a concatenation.
  at::Tensor grad_w_hh = at::mm(dz.select(0, 0).t(), h0);
  if (steps > 1) {
    grad_w_hh.addmm_(dz.narrow(0, 1, steps - 1).reshape({(steps - 1) * batch, 4 * hidden}).t(),
                     hs.narrow(0, 0, steps - 1).reshape({(steps - 1) * batch, hidden}));
  }
  at::Tensor grad_bias = dz_flat.sum(0);
  return {grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace dni
