// dni::lstm_dni_window: the forward of one bootstrapped window. The LSTM window
// (dni::lstm_window_forward, through the dispatcher, so every backend's kernel is
// used) plus the SG predictions at both boundaries, M(s_0) and M(s_T), as ONE GEMM
// over the 2B stacked states, and the aux head's M_aux(s_0) when given.
//
// Registered as CompositeExplicitAutograd: it is device-agnostic. Its autograd
// (dni_kernels/ops.py) bootstraps BPTT from sg_scale·M(s_T) through
// dni::lstm_window_backward and regresses the heads with dni::sg_update.
// dni::lstm_dni_window_triton is the same composite over the Triton twins
// (dni::lstm_window_forward_triton here; *_triton ops in its autograd).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <tuple>

#include "dni/dense_linear.h"
#include "dni/lstm_checks.h"

namespace dni {
namespace {

// kTriton: dni::lstm_window_forward_triton (the Triton twin), else the C++ kernels'
// dni::lstm_window_forward.
template <bool kTriton>
std::tuple<Tensor, Tensor, Tensor> call_window_forward(const Tensor& x, const Tensor& h0,
                                                       const Tensor& c0, const Tensor& w_ih,
                                                       const Tensor& w_hh,
                                                       const OptTensor& bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kTriton ? "dni::lstm_window_forward_triton"
                                                  : "dni::lstm_window_forward",
                                          "")
                       .typed<std::tuple<Tensor, Tensor, Tensor>(
                           const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                           const Tensor&, const OptTensor&)>();
  return op.call(x, h0, c0, w_ih, w_hh, bias);
}

Tensor sg_input(const Tensor& h, const Tensor& c, bool sg_reads_cell) {
  return sg_reads_cell ? at::cat({h, c}, 1) : h;
}

template <bool kTriton>
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_dni_window(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
    const Tensor& w_hh, const OptTensor& bias, const Tensor& sg_weight,
    const OptTensor& sg_bias, const OptTensor& aux_weight, const OptTensor& aux_bias,
    double sg_scale, bool sg_reads_cell, bool bootstrap, double aux_loss_weight) {
  check_lstm_window(x, h0, c0, w_ih, w_hh, bias, /*half_on_cpu=*/kTriton);
  check_lstm_sg(h0, sg_weight, sg_bias, aux_weight, aux_bias, sg_scale, sg_reads_cell,
                aux_loss_weight);
  (void)bootstrap;  // read by the backward only
  auto [hs, cs, gates] = call_window_forward<kTriton>(x, h0, c0, w_ih, w_hh, bias);
  const int64_t steps = x.size(0), batch = x.size(1);
  const int64_t feat = sg_weight.size(0);
  const Tensor s_start = sg_input(h0, c0, sg_reads_cell);
  const Tensor s_end = sg_input(hs.select(0, steps - 1), cs.select(0, steps - 1),
                                sg_reads_cell);
  // M(s_0) and M(s_T) in one product over the stacked states; its [2B, F] result is
  // sg_raw itself without an aux head (no copy: 2 MB at B = 256, F = 1024), the first
  // two of three rows with one.
  const Tensor stacked =
      dense_linear(at::cat({s_start, s_end}), sg_weight, sg_bias).out.view({2, batch, feat});
  if (!aux_weight.has_value()) return {hs, cs, gates, stacked};
  const Tensor aux = dense_linear(s_start, *aux_weight, aux_bias).out;
  return {hs, cs, gates, at::cat({stacked, aux.unsqueeze(0)})};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CompositeExplicitAutograd, m) {
  m.impl("lstm_dni_window", &lstm_dni_window<false>);
  m.impl("lstm_dni_window_triton", &lstm_dni_window<true>);
}

}  // namespace dni
