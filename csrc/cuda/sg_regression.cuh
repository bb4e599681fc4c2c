// The SG regression on CUDA (reference.py::sg_update), multi-launch: shared by the
// sg_update op and by linear_step's multi-launch path for its prev_* chain.
//
//   e = sg_raw − target, loss = Σe²/B      residual_kernel (or linear_step's grad_x
//                                          GEMM epilogue, which produces the target)
//   A ← A − lr·(2/B)·eᵀh                   GEMM with the update in its epilogue (or
//                                          cuBLAS, then that epilogue: product_scratch)
//   a, C[y] ← likewise                     column sums, then apply
#pragma once

#include "gemm.cuh"
#include "reductions.cuh"

namespace dni::cuda {

// Everything after e [B, F] and loss_sum exist.
template <typename T, typename P>
void regression_updates(const SgRegressionParams& p, cudaStream_t stream) {
  const int64_t batch = p.batch, feat = p.feat;
  const float scale = batch > 0 ? 2.f / static_cast<float>(batch) : 0.f;
  // eᵀ as an [F, B] operand; h as [B, F] with its own strides.
  const Operand<float> e_t{p.e, 1, feat};
  const Operand<T> h{static_cast<const T*>(p.h.data), p.h.row_stride, p.h.col_stride};
  product(p.product_scratch, e_t, h, feat, feat, batch,
          UpdateEpilogue<P>{static_cast<P*>(p.weight_dst), feat, scale, p.step}, stream);
  reduce_and_apply(p.e, batch, feat, Labels{}, p.bias_sum, static_cast<P*>(p.bias_dst),
                   scale, p.step, stream);
  reduce_and_apply(p.e, batch, feat, p.labels, p.table_sum, static_cast<P*>(p.table_dst),
                   scale, p.step, stream);
  finish_loss_kernel<T><<<1, 1, 0, stream>>>(p.loss_sum, batch, static_cast<T*>(p.loss));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, typename P>
void run_sg_update(const SgRegressionParams& p, cudaStream_t stream) {
  check_labels_on_device(p.labels, Labels{}, p.batch, stream);
  residual_kernel<T><<<elementwise_blocks(p.batch * p.feat), kElementwiseThreads, 0, stream>>>(
      p.sg_raw, p.target, p.batch, p.feat, p.e, p.loss_sum);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  regression_updates<T, P>(p, stream);
}

template <typename T>
void launch_sg_update(const SgRegressionParams& p, bool params_fp32, cudaStream_t stream) {
  if (params_fp32) {
    run_sg_update<T, float>(p, stream);
  } else {
    run_sg_update<T, T>(p, stream);
  }
}

}  // namespace dni::cuda
