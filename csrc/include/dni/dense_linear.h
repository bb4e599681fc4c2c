// Dense products for the CPU and CUDA kernels' host code: a·bᵀ (+ bias) (then φ).
//
// Large float32 products on the CPU go to oneDNN through the dispatcher op
// mkldnn::_linear_pointwise (the one torch.compile's CPU backend emits), with the bias
// and activation fused into its epilogue: on this project's AVX-512 development CPU
// (AMD EPYC), where MKL's sgemm takes a generic path, oneDNN ran 15–40% faster for the
// NT and NN layouts used here. On an x86 CPU without AVX-512 (with MKL) only the
// products on a packed weight do: the LSTM window's whole-window products ran faster
// on MKL there ($DNI_CPU_GEMM overrides, see dense_linear.cpp). Everything else
// (small products, float64, CUDA tensors, a torch without oneDNN,
// torch.backends.mkldnn.enabled = False) goes to at::mm_out / at::addmm_out, into an
// output from empty_large_output (huge-page advice from 32 MiB, large_output.h);
// oneDNN's op allocates its own.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "dni/math.h"

namespace dni {

struct DenseLinear {
  at::Tensor out;     // [M, N], contiguous, newly allocated
  bool activated;     // φ was applied (fused); otherwise out holds a·bᵀ + bias
};

// a [M, K], b [N, K], bias [N] (optional), any strides. φ is applied only where it is
// fused for free; the caller applies it when `activated` is false.
DenseLinear dense_linear(const at::Tensor& a, const at::Tensor& b,
                         const std::optional<at::Tensor>& bias,
                         Activation act = Activation::kIdentity);

// b [N, K] prepared for `products` products a·bᵀ with `rows`-row a's (an LSTM's
// recurrent weight, once per window): oneDNN's packed layout when those products go to
// oneDNN and are many enough to repay the packing (a transposed view only from 4 MB
// up, see dense_linear.cpp); oneDNN then skips re-packing b on every call (alone, 25%
// faster at 32 rows, 5% at 256, on the development CPU). b unchanged otherwise. Pass
// the result as dense_linear's b.
at::Tensor prepack_weight(const at::Tensor& b, int64_t rows, int64_t products);

// a·bᵀ (+ bias) with no activation.
inline at::Tensor dense_linear(const at::Tensor& a, const at::Tensor& b) {
  return dense_linear(a, b, std::nullopt).out;
}

}  // namespace dni
