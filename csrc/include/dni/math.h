// Per-element math shared by the CPU kernels (compiled by the host compiler) and the
// CUDA kernels (compiled by nvcc): activations, their derivatives, the SGD update.
// Keeping one copy means the CPU test suite exercises the same code a GPU runs.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DNI_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Always inlined on the host as on the device: the AVX-512 LSTM step
// (csrc/cpu/lstm_window_step_avx512.cpp) instantiates these on 16-lane vectors, and an
// out-of-line copy compiled for the baseline ISA would pass them under another ABI.
#define DNI_HOST_DEVICE inline __attribute__((always_inline))
#else
#define DNI_HOST_DEVICE inline
#endif

namespace dni {

enum class Activation : int { kIdentity = 0, kRelu = 1, kTanh = 2, kSigmoid = 3 };

// h = φ(z), evaluated in the accumulation type T (float or double).
template <Activation act, typename T>
DNI_HOST_DEVICE T activation_forward(T z) {
  if constexpr (act == Activation::kRelu) {
    return z < T(0) ? T(0) : z;  // NaN stays NaN, as in torch.relu
  } else if constexpr (act == Activation::kTanh) {
    return tanh(z);
  } else if constexpr (act == Activation::kSigmoid) {
    return T(1) / (T(1) + exp(-z));
  } else {
    return z;
  }
}

// φ′(z) written through h = φ(z): the fused kernels keep only h, never z.
template <Activation act, typename T>
DNI_HOST_DEVICE T activation_derivative(T h) {
  if constexpr (act == Activation::kRelu) {
    return static_cast<T>(h > T(0));  // branch-free: a 50/50 branch mispredicts
  } else if constexpr (act == Activation::kTanh) {
    return T(1) - h * h;
  } else if constexpr (act == Activation::kSigmoid) {
    return h * (T(1) - h);
  } else {
    return T(1);
  }
}

// g = s · ĝ_raw · φ′(z): the gradient at the pre-activation driven by the SG.
template <Activation act, typename T>
DNI_HOST_DEVICE T pre_activation_gradient(T sg_raw, T h, T sg_scale) {
  return sg_scale * sg_raw * activation_derivative<act>(h);
}

// One parameter update from a raw gradient: in "sgd" mode p ← p − lr·d, in "grads"
// mode the caller passes the .grad buffer as p and step = −1 so that p ← p + d. A zero
// step leaves p as it is, even for a NaN or inf d (the reference's lr = 0; BLAS, which
// the CPU weight updates use, skips a zero-alpha product the same way).
template <typename T>
DNI_HOST_DEVICE T apply_update(T p, T d, T step) {
  return step == T(0) ? p : p - step * d;
}

}  // namespace dni
