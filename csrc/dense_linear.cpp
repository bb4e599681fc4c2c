#include "dni/dense_linear.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include "dni/large_output.h"
#include "dni/settings.h"

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

// Where auto sends a large float32 product that is not one of many on a packed weight:
// to oneDNN, except on an x86 CPU without AVX-512 (the AVX-512 steps' F, VL, BW and DQ,
// torch's AVX512 capability) when torch has MKL. Measured alone (2026-11-23, best of
// three, LSTM window shapes T·B = 256–10240, H = 256 and 1024): on a 2-core Zen 3
// (AVX2) MKL ran the whole-window products (input projection NT, grad_x NN, weight
// gradients) at 129–173 GFLOP/s against oneDNN's 109–160 (within 3 % of it at the one
// shape where it was slower); on the AVX-512 EPYC of earlier sessions MKL took a generic
// path and oneDNN ran 15–40 % faster. Two CPUs: Intel's with AVX2 only follow the Zen 3
// unmeasured, and the rest (Intel AVX-512, other BLAS, other ISAs, compilers without
// GCC's CPU builtins) keep oneDNN, as before.
bool onednn_by_default() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  return cpu_has_avx512() || !at::hasMKL();
#else
  return true;
#endif
}

// $DNI_CPU_GEMM = auto (default), onednn or blas. auto keeps the per-step products on a
// packed weight (`repeated`) with oneDNN on every CPU: on the Zen 3, with them on oneDNN
// rather than on MKL unpacked, the LSTM window at T = 40, B = 32, H = 1024 took
// 0.82–0.85 of the time (at T = 40, B = 256, H = 256, 1.00–1.03: no loss).
bool onednn_chosen(bool repeated) {
  const std::string mode = env_setting("DNI_CPU_GEMM", {"onednn", "blas"});
  return mode == "auto" ? repeated || onednn_by_default() : mode == "onednn";
}

bool use_onednn(const at::Tensor& b, int64_t macs, bool repeated) {
  // $DNI_CPU_GEMM is checked on every CPU product that comes here, whatever its size,
  // so a bad value raises at an op's first one (linear_step's is before its weight
  // update). BLAS calls made directly (the in-place weight updates, the TN weight
  // gradients) never read it; sg_update makes only those.
  return b.device().is_cpu() && onednn_chosen(repeated) && b.scalar_type() == at::kFloat &&
         macs >= kOneDnnMinMacs && at::hasMKLDNN() &&
         at::globalContext().userEnabledMkldnn() && linear_pointwise_op() != nullptr;
}

bool use_onednn(const at::Tensor& a, const at::Tensor& b) {
  // A packed weight was packed because its products go to oneDNN.
  return b.is_mkldnn() || use_onednn(b, a.size(0) * a.size(1) * b.size(0), false);
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
      !use_onednn(b, rows * b.size(0) * b.size(1), /*repeated=*/true) ||
      reorder_linear_weight_op() == nullptr) {
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
  // Allocated here, so that an output of 32 MiB or more gets huge-page advice before
  // its first write (large_output.h).
  at::Tensor out = empty_large_output({a.size(0), b.size(0)}, a.options());
  if (bias.has_value()) {
    at::addmm_out(out, *bias, a, b.t());
  } else {
    at::mm_out(out, a, b.t());
  }
  return {out, act == Activation::kIdentity};
}

}  // namespace dni
