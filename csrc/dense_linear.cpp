#include "dni/dense_linear.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>

namespace dni {
namespace {

// Below about 8M multiply-adds oneDNN's per-call setup is not repaid: measured slower
// than MKL at 32×256×256 (2M), faster from 64×512×512 (17M) up.
constexpr int64_t kOneDnnMinMacs = int64_t{1} << 23;
// Packing costs about a product's time, and the packed products gained less inside the
// LSTM loop than alone: a window of 8 steps ran slower with it, one of 40 faster.
constexpr int64_t kMinProductsToPack = 16;
// Packing a transposed view (the LSTM backward's W_hhᵀ) reads it strided and cost 5x
// more: 1.0 ms against 0.19 ms for 1024×256. For a 1 MB weight oneDNN's own per-call
// handling of the view was then as fast as the packed product (H = 256: 0.176 against
// 0.173 ms per step), so packing only lost time; at 16 MB (H = 1024) each packed
// product saved 1.2–1.4 ms.
constexpr int64_t kMinTransposedElementsToPack = int64_t{1} << 20;

// The oneDNN ops, looked up once; null in a torch built without oneDNN.
const c10::OperatorHandle* linear_pointwise_op() {
  static const auto op = c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  return op.has_value() ? &*op : nullptr;
}

const c10::OperatorHandle* reorder_linear_weight_op() {
  static const auto op =
      c10::Dispatcher::singleton().findOp({"mkldnn::_reorder_linear_weight", ""});
  return op.has_value() ? &*op : nullptr;
}

bool use_onednn(const at::Tensor& b, int64_t macs) {
  return b.device().is_cpu() && b.scalar_type() == at::kFloat && macs >= kOneDnnMinMacs &&
         at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() &&
         linear_pointwise_op() != nullptr;
}

bool use_onednn(const at::Tensor& a, const at::Tensor& b) {
  // A packed weight was packed because its products go to oneDNN.
  return b.is_mkldnn() || use_onednn(b, a.size(0) * a.size(1) * b.size(0));
}

// The activations oneDNN applies in its epilogue. Not relu: oneDNN's maps NaN to 0
// where torch.relu (the reference) keeps it, so a NaN would vanish from h and from
// every update; the caller's own relu costs one pass over [M, N].
const char* onednn_attr(Activation act) {
  switch (act) {
    case Activation::kTanh: return "tanh";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kRelu:
    case Activation::kIdentity: break;
  }
  return "none";
}

}  // namespace

at::Tensor prepack_weight(const at::Tensor& b, int64_t rows, int64_t products) {
  const bool cheap_view = !b.is_contiguous() && b.numel() < kMinTransposedElementsToPack;
  if (products < kMinProductsToPack || cheap_view ||
      !use_onednn(b, rows * b.size(0) * b.size(1)) || reorder_linear_weight_op() == nullptr) {
    return b;
  }
  torch::jit::Stack stack{b.contiguous(), c10::IValue(rows)};
  reorder_linear_weight_op()->callBoxed(&stack);
  return stack[0].toTensor();
}

DenseLinear dense_linear(const at::Tensor& a, const at::Tensor& b,
                         const std::optional<at::Tensor>& bias, Activation act) {
  if (use_onednn(a, b)) {
    // Boxed call: the op's unboxed C++ signature is internal to ATen.
    torch::jit::Stack stack{a, b, bias.has_value() ? c10::IValue(*bias) : c10::IValue(),
                            std::string(onednn_attr(act)),
                            c10::List<std::optional<at::Scalar>>(), c10::IValue()};
    linear_pointwise_op()->callBoxed(&stack);
    return {stack[0].toTensor(), act != Activation::kRelu};
  }
  at::Tensor out = bias.has_value() ? at::addmm(*bias, a, b.t()) : at::mm(a, b.t());
  return {out, act == Activation::kIdentity};
}

}  // namespace dni
