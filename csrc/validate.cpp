// dni::_check_linear_step / dni::_check_sg_update: the argument checks of
// csrc/checks.cpp as ops, so kernels launched from Python (dni_kernels/triton/) refuse
// bad input with the same messages as the C++ kernels, before anything is written.
//
// Half activations (float16/bfloat16, with parameters of that dtype or float32) are
// allowed. Label values are range-checked only on CPU: on CUDA that would read the
// labels back to the host (a sync), so the kernels check them on the device instead.
#include <torch/library.h>

#include "dni/checks.h"

namespace dni {
namespace {

constexpr DtypePolicy kPolicy{/*allow_half_activations=*/true};

void check_linear_step_op(
    const Tensor& x, const Tensor& weight, const OptTensor& bias,
    const OptTensor& weight_grad, const OptTensor& bias_grad, const Tensor& sg_weight,
    const OptTensor& sg_bias, const OptTensor& sg_table, const OptTensor& labels,
    c10::string_view activation, double sg_scale, double lr, const OptTensor& prev_h,
    const OptTensor& prev_sg_raw, const OptTensor& prev_labels,
    const OptTensor& prev_sg_weight, const OptTensor& prev_sg_bias,
    const OptTensor& prev_sg_table, const OptTensor& prev_sg_weight_grad,
    const OptTensor& prev_sg_bias_grad, const OptTensor& prev_sg_table_grad,
    double prev_lr, bool compute_grad_x) {
  parse_activation(std::string(activation));
  const bool check_values = x.is_cpu();
  check_linear_step(x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias, sg_table,
                    labels, sg_scale, lr, kPolicy, check_values);
  check_prev_group(x, weight, bias, weight_grad, bias_grad, prev_h, prev_sg_raw, prev_labels,
                   prev_sg_weight, prev_sg_bias, prev_sg_table, prev_sg_weight_grad,
                   prev_sg_bias_grad, prev_sg_table_grad, prev_lr, compute_grad_x, kPolicy,
                   check_values);
}

void check_sg_update_op(const Tensor& h, const Tensor& sg_raw, const Tensor& target,
                        const OptTensor& labels, const Tensor& sg_weight,
                        const OptTensor& sg_bias, const OptTensor& sg_table,
                        const OptTensor& sg_weight_grad, const OptTensor& sg_bias_grad,
                        const OptTensor& sg_table_grad, double lr) {
  SgGroup group{h,        sg_raw,         labels,       sg_weight,    sg_bias,
                sg_table, sg_weight_grad, sg_bias_grad, sg_table_grad};
  check_sg_group(group, "", &target, lr, kPolicy, /*check_label_values=*/h.is_cpu());
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CompositeExplicitAutograd, m) {
  m.impl("_check_linear_step", &check_linear_step_op);
  m.impl("_check_sg_update", &check_sg_update_op);
}

}  // namespace dni
