// The fused DNI layer step on CPU (dni_kernels/reference.py::linear_step).
//
// Four dense products (three without compute_grad_x, which skips grad_x = g W): the
// forward, SG and grad_x products through dense_linear (large float32 ones on oneDNN,
// with the bias and φ fused in, or on MKL: see dense_linear.h; BLAS otherwise). The
// elementwise stages between them are single parallel loops with the activation and
// conditioning fixed at compile time. The weight update is fused into the
// weight-gradient GEMM (W.addmm_(gᵀ, x, beta=1, alpha=−lr)): no [O, I] temporary is
// ever allocated.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "dni/checks.h"
#include "dni/dense_linear.h"
#include "dni/math.h"
#include "dni/static_switch.h"
#include "sg_regression.h"

namespace dni::cpu {
namespace {

// Rows per parallel task for the [B, O] elementwise loops.
int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

// h ← φ(h) in place (h holds z on entry). relu uses the shared math.h function,
// which the compiler vectorises. tanh and sigmoid go through ATen's runtime-dispatched
// SIMD kernels instead: libm's scalar tanh/exp do not vectorise and, at B=256,
// width 256, cost ~2 ms — more than all four GEMMs of the step together.
template <typename scalar_t, Activation act>
void apply_activation(Tensor& h) {
  if constexpr (act == Activation::kTanh) {
    h.tanh_();
  } else if constexpr (act == Activation::kSigmoid) {
    h.sigmoid_();
  } else {
    const int64_t rows = h.size(0), cols = h.size(1);
    scalar_t* p = h.data_ptr<scalar_t>();
    at::parallel_for(0, rows, row_grain(cols), [=](int64_t begin, int64_t end) {
      for (int64_t i = begin * cols; i < end * cols; ++i) p[i] = activation_forward<act>(p[i]);
    });
  }
}

// One row of the SG stage. Restrict pointers and a by-value scale let the compiler
// vectorise it (a captured-by-reference scale may alias the stores, which left a
// scalar loop with a mispredicting branch on φ′ behind).
template <typename scalar_t, Activation act, bool kConditioned>
inline void sg_row(scalar_t* __restrict__ raw, const scalar_t* __restrict__ h,
                   const scalar_t* __restrict__ class_row, scalar_t* __restrict__ g,
                   scalar_t sg_scale, int64_t cols) {
  for (int64_t o = 0; o < cols; ++o) {
    scalar_t v = raw[o];
    if constexpr (kConditioned) {
      v += class_row[o];
      raw[o] = v;
    }
    g[o] = pre_activation_gradient<act>(v, h[o], sg_scale);
  }
}

// sg_raw += C[y] (cDNI); g = s · sg_raw · φ′(h). One pass over [B, O].
template <typename scalar_t, Activation act, bool kConditioned>
void sg_and_pre_activation_gradient(Tensor& sg_raw, const Tensor& h, const scalar_t* table,
                                    const int64_t* labels, scalar_t sg_scale, Tensor& g) {
  const int64_t rows = h.size(0), cols = h.size(1);
  scalar_t* raw = sg_raw.data_ptr<scalar_t>();
  const scalar_t* hp = h.data_ptr<scalar_t>();
  scalar_t* gp = g.data_ptr<scalar_t>();
  at::parallel_for(0, rows, row_grain(cols), [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* class_row = kConditioned ? table + labels[r] * cols : nullptr;
      sg_row<scalar_t, act, kConditioned>(raw + r * cols, hp + r * cols, class_row,
                                          gp + r * cols, sg_scale, cols);
    }
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> linear_step_cpu(
    const Tensor& x, Tensor& weight, const OptTensor& bias, const OptTensor& weight_grad,
    const OptTensor& bias_grad, const Tensor& sg_weight, const OptTensor& sg_bias,
    const OptTensor& sg_table, const OptTensor& labels, c10::string_view activation,
    double sg_scale, double lr, const OptTensor& prev_h, const OptTensor& prev_sg_raw,
    const OptTensor& prev_labels, const OptTensor& prev_sg_weight,
    const OptTensor& prev_sg_bias, const OptTensor& prev_sg_table,
    const OptTensor& prev_sg_weight_grad, const OptTensor& prev_sg_bias_grad,
    const OptTensor& prev_sg_table_grad, double prev_lr, bool compute_grad_x) {
  // ---- validate everything before anything is written ----
  const DtypePolicy policy{false};
  const Activation act = parse_activation(std::string(activation));
  check_linear_step(x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias, sg_table,
                    labels, sg_scale, lr, policy, /*check_label_values=*/true);
  const std::optional<SgGroup> prev = check_prev_group(
      x, weight, bias, weight_grad, bias_grad, prev_h, prev_sg_raw, prev_labels,
      prev_sg_weight, prev_sg_bias, prev_sg_table, prev_sg_weight_grad, prev_sg_bias_grad,
      prev_sg_table_grad, prev_lr, compute_grad_x, policy, /*check_label_values=*/true);
  const bool chained = prev.has_value();
  TORCH_CHECK(x.device().is_cpu(), "dni: linear_step CPU kernel got x on ", x.device());

  auto opts = x.options();
  // z = x Wᵀ + b and h = φ(z): φ fused into the product where dense_linear can.
  DenseLinear forward = dense_linear(x, weight, bias, act);
  Tensor h = forward.out;
  Tensor sg_raw;
  Tensor g = at::empty_like(h);
  // ĝ_raw = h Aᵀ + a; the class row C[y] and g = s·ĝ_raw·φ′ follow in one pass.
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dni_linear_step_cpu", [&] {
    DNI_ACTIVATION_SWITCH(act, kAct, [&] {
      if constexpr (kAct != Activation::kIdentity) {
        if (!forward.activated) apply_activation<scalar_t, kAct>(h);
      }
      sg_raw = dense_linear(h, sg_weight, sg_bias).out;
      Tensor y = labels.has_value() ? labels->contiguous() : Tensor();
      DNI_BOOL_SWITCH(sg_table.has_value(), kConditioned, [&] {
        sg_and_pre_activation_gradient<scalar_t, kAct, kConditioned>(
            sg_raw, h, kConditioned ? sg_table->data_ptr<scalar_t>() : nullptr,
            kConditioned ? y.data_ptr<int64_t>() : nullptr,
            static_cast<scalar_t>(sg_scale), g);
      });
    });
  });
  // grad_x = g W with W before its update. Without compute_grad_x (a first layer) an
  // empty tensor stands in for it.
  Tensor grad_x = compute_grad_x ? dense_linear(g, weight.t()) : at::empty({0}, opts);
  // W ← W − lr·gᵀx straight into W's storage ("grads" mode: W.grad += gᵀx).
  const bool grads_mode = weight_grad.has_value();
  const double step = grads_mode ? -1.0 : lr;
  Tensor weight_dst = grads_mode ? *weight_grad : weight;
  weight_dst.addmm_(g.t(), x, /*beta=*/1, /*alpha=*/-step);
  if (bias.has_value()) {
    Tensor bias_dst = grads_mode ? *bias_grad : *bias;
    scatter_update(g, nullptr, bias_dst, /*scale=*/1.0, step);
  }
  Tensor prev_loss = chained ? sg_regression(*prev, grad_x, prev_lr)
                             : at::zeros({}, opts);
  return {h, sg_raw, grad_x, prev_loss};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CPU, m) { m.impl("linear_step", &linear_step_cpu); }

}  // namespace dni::cpu
