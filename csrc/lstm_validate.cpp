// dni::_check_lstm_window_forward / _backward: the shared LSTM checks of
// csrc/lstm_checks.cpp as ops, so the Triton twins (dni_kernels/triton/lstm_window.py)
// refuse bad input with the C++ kernels' messages, before anything is written.
// float16 is allowed on CPU here: the twins run CPU tensors in Triton's interpreter.
#include <torch/library.h>

#include "dni/lstm_checks.h"

namespace dni {
namespace {

void check_forward_op(const Tensor& x, const Tensor& h0, const Tensor& c0,
                      const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias) {
  check_lstm_window(x, h0, c0, w_ih, w_hh, bias, /*half_on_cpu=*/true);
}

void check_backward_op(const OptTensor& grad_hs, const OptTensor& grad_cs,
                       const OptTensor& grad_h_end, const OptTensor& grad_c_end,
                       const Tensor& x, const Tensor& h0, const Tensor& c0,
                       const Tensor& w_ih, const Tensor& w_hh, const Tensor& hs,
                       const Tensor& cs, const Tensor& gates, bool /*compute_grad_x*/) {
  check_lstm_window_backward(grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih,
                             w_hh, hs, cs, gates, /*half_on_cpu=*/true);
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CompositeExplicitAutograd, m) {
  m.impl("_check_lstm_window_forward", &check_forward_op);
  m.impl("_check_lstm_window_backward", &check_backward_op);
}

}  // namespace dni
