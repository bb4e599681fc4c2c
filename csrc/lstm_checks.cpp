#include "dni/lstm_checks.h"

#include <ATen/ATen.h>

#include <string>

namespace dni {
namespace {

// Same device and dtype as x, and the given shape.
void check_like(const Tensor& t, const char* name, at::IntArrayRef shape, const Tensor& x) {
  TORCH_CHECK(t.device() == x.device(), "dni: ", name, " is on ", t.device(),
              " but x is on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "dni: ", name, " must have x's dtype ",
              x.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, "dni: ", name, " must have shape ", shape, ", got ",
              t.sizes());
}

void check_optional_like(const OptTensor& t, const char* name, at::IntArrayRef shape,
                         const Tensor& x) {
  if (t.has_value()) check_like(*t, name, shape, x);
}

}  // namespace

void check_lstm_window(const Tensor& x, const Tensor& h0, const Tensor& c0,
                       const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias,
                       bool half_on_cpu) {
  TORCH_CHECK(x.dim() == 3, "dni: x must be 3-D [steps, batch, input_size], got ",
              x.sizes());
  TORCH_CHECK(x.size(0) >= 1, "dni: x must hold at least one step, got ", x.sizes());
  const auto dt = x.scalar_type();
  const bool on_cpu = x.device().is_cpu() && !half_on_cpu;
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble ||
                  (!on_cpu && (dt == at::kHalf || dt == at::kBFloat16)),
              "dni: x must be float32 or float64", on_cpu ? " on CPU" : "", ", got ", dt);
  TORCH_CHECK(h0.dim() == 2, "dni: h0 must be 2-D [batch, hidden_size], got ",
              h0.sizes());
  const int64_t batch = x.size(1), in = x.size(2), hidden = h0.size(1);
  check_like(h0, "h0", {batch, hidden}, x);
  check_like(c0, "c0", {batch, hidden}, x);
  check_like(w_ih, "w_ih", {4 * hidden, in}, x);
  check_like(w_hh, "w_hh", {4 * hidden, hidden}, x);
  check_optional_like(bias, "bias", {4 * hidden}, x);
}

void check_lstm_window_backward(const OptTensor& grad_hs, const OptTensor& grad_cs,
                                const OptTensor& grad_h_end, const OptTensor& grad_c_end,
                                const Tensor& x, const Tensor& h0, const Tensor& c0,
                                const Tensor& w_ih, const Tensor& w_hh, const Tensor& hs,
                                const Tensor& cs, const Tensor& gates, bool half_on_cpu) {
  check_lstm_window(x, h0, c0, w_ih, w_hh, std::nullopt, half_on_cpu);
  const int64_t steps = x.size(0), batch = x.size(1), hidden = h0.size(1);
  check_like(hs, "hs", {steps, batch, hidden}, x);
  check_like(cs, "cs", {steps, batch, hidden}, x);
  check_like(gates, "gates", {steps, batch, 4 * hidden}, x);
  for (auto [t, name] : {std::pair{&hs, "hs"}, {&cs, "cs"}, {&gates, "gates"}}) {
    TORCH_CHECK(t->is_contiguous(), "dni: ", name,
                " must be contiguous (the saved output of lstm_window_forward)");
  }
  check_optional_like(grad_hs, "grad_hs", {steps, batch, hidden}, x);
  check_optional_like(grad_cs, "grad_cs", {steps, batch, hidden}, x);
  check_optional_like(grad_h_end, "grad_h_end", {batch, hidden}, x);
  check_optional_like(grad_c_end, "grad_c_end", {batch, hidden}, x);
}

void check_lstm_sg(const Tensor& h0, const Tensor& sg_weight, const OptTensor& sg_bias,
                   const OptTensor& aux_weight, const OptTensor& aux_bias,
                   double sg_scale, bool sg_reads_cell, double aux_loss_weight) {
  check_scalar(sg_scale, "sg_scale", /*nonnegative=*/false);
  check_scalar(aux_loss_weight, "aux_loss_weight", /*nonnegative=*/true);
  const int64_t feat = sg_reads_cell ? 2 * h0.size(1) : h0.size(1);
  check_like(sg_weight, "sg_weight", {feat, feat}, h0);
  check_optional_like(sg_bias, "sg_bias", {feat}, h0);
  check_optional_like(aux_weight, "aux_weight", {feat, feat}, h0);
  TORCH_CHECK(aux_weight.has_value() || !aux_bias.has_value(),
              "dni: aux_bias given without aux_weight");
  check_optional_like(aux_bias, "aux_bias", {feat}, h0);
}

}  // namespace dni
