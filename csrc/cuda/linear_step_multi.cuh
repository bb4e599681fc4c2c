// linear_step on CUDA for large layers: one product per stage, the tiled GEMM with the
// stage's elementwise work fused into its epilogue (the multi path), or cuBLAS followed
// by that epilogue as an elementwise kernel (the cuBLAS path, p.product_scratch set;
// see gemm.cuh::product):
//
//   z = x Wᵀ + b,  h = φ(z)                 forward GEMM, bias + activation epilogue
//   ĝ_raw = h Aᵀ + a + C[y], g = s·ĝ_raw·φ′ SG GEMM, cDNI gather + g epilogue
//   grad_x = g W                           grad_x GEMM (+ prev residual e and loss);
//                                          not launched without compute_grad_x
//   W ← W − lr·gᵀx                         weight-gradient GEMM, update epilogue
//   b ← b − lr·Σ g                         column sums, then apply
//   prev SG regression toward grad_x       sg_regression.cuh
//
// Ordering is the stream's: grad_x reads W in a launch that precedes the update, and
// each epilogue reads the cuBLAS path's scratch before the next product overwrites it.
// Optional bias / SG bias are null-pointer tests in the epilogues (uniform across
// the grid, once per output element, off the k-loop); the activation and the cDNI
// gather are template parameters.
#pragma once

#include "dni/static_switch.h"
#include "sg_regression.cuh"

namespace dni::cuda {

template <Activation act, typename T, typename P>
struct ForwardEpilogue {
  const P* bias;
  T* h;
  int64_t ld;
  float* block_sum_dst = nullptr;
  __device__ float operator()(int64_t m, int64_t n, float acc) const {
    const float z = bias != nullptr ? acc + to_float(bias[n]) : acc;
    h[m * ld + n] = from_float<T>(activation_forward<act>(z));
    return 0.f;
  }
};

template <Activation act, typename T, typename P, bool kConditioned>
struct SgEpilogue {
  const P* sg_bias;
  const P* table;
  Labels labels;
  const T* h;
  T* sg_raw;
  float* g;
  int64_t ld;
  float sg_scale;
  float* block_sum_dst = nullptr;
  __device__ float operator()(int64_t m, int64_t n, float acc) const {
    float v = sg_bias != nullptr ? acc + to_float(sg_bias[n]) : acc;
    if constexpr (kConditioned) v += to_float(table[label_at(labels, m) * ld + n]);
    const T raw = from_float<T>(v);
    sg_raw[m * ld + n] = raw;
    g[m * ld + n] = pre_activation_gradient<act>(to_float(raw), to_float(h[m * ld + n]), sg_scale);
    return 0.f;
  }
};

// grad_x, and when chained the lower layer's residual e = prev_sg_raw − grad_x (with
// grad_x as stored, in the activation dtype) whose squares sum into the loss.
template <typename T>
struct GradXEpilogue {
  T* grad_x;
  int64_t ld;
  Strided prev_sg_raw;
  float* e;              // null when not chained
  float* block_sum_dst;  // prev loss_sum, null when not chained
  __device__ float operator()(int64_t m, int64_t n, float acc) const {
    const T gx = from_float<T>(acc);
    grad_x[m * ld + n] = gx;
    if (e == nullptr) return 0.f;
    const float r = load<T>(prev_sg_raw, m, n) - to_float(gx);
    e[m * ld + n] = r;
    return r * r;
  }
};

template <typename T, typename P, Activation act>
void run_multi(const LinearStepParams& p, cudaStream_t stream) {
  const int64_t batch = p.batch, in = p.in, out = p.out;
  check_labels_on_device(p.labels, p.chained ? p.prev.labels : Labels{}, batch, stream);
  const auto* weight = static_cast<const P*>(p.weight);
  const Operand<T> x{static_cast<const T*>(p.x.data), p.x.row_stride, p.x.col_stride};
  auto* h = static_cast<T*>(p.h);

  // Wᵀ as an [I, O] operand.
  product(p.product_scratch, x, Operand<P>{weight, 1, in}, batch, out, in,
          ForwardEpilogue<act, T, P>{static_cast<const P*>(p.bias), h, out}, stream);
  DNI_BOOL_SWITCH(p.labels.data != nullptr, kConditioned, [&] {
    const SgEpilogue<act, T, P, kConditioned> epilogue{
        static_cast<const P*>(p.sg_bias), static_cast<const P*>(p.sg_table), p.labels, h,
        static_cast<T*>(p.sg_raw), p.g, out, p.sg_scale};
    product(p.product_scratch, Operand<T>{h, out, 1},
            Operand<P>{static_cast<const P*>(p.sg_weight), 1, out}, batch, out, out, epilogue,
            stream);
  });
  if (p.compute_grad_x) {
    const GradXEpilogue<T> epilogue{static_cast<T*>(p.grad_x), in, p.prev.sg_raw,
                                    p.chained ? p.prev.e : nullptr,
                                    p.chained ? p.prev.loss_sum : nullptr};
    product(p.product_scratch, Operand<float>{p.g, out, 1}, Operand<P>{weight, in, 1}, batch,
            in, out, epilogue, stream);
  }
  // gᵀ as an [O, B] operand times x [B, I], straight into W (or W.grad).
  product(p.product_scratch, Operand<float>{p.g, 1, out}, x, out, in, batch,
          UpdateEpilogue<P>{static_cast<P*>(p.weight_dst), in, 1.f, p.step}, stream);
  reduce_and_apply(p.g, batch, out, Labels{}, p.bias_sum, static_cast<P*>(p.bias_dst), 1.f,
                   p.step, stream);
  if (p.chained) regression_updates<T, P>(p.prev, stream);
}

}  // namespace dni::cuda
