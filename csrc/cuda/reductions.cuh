// Batch reductions of the multi-launch path: column sums of [B, F] rows into a bias
// [F] or, through labels, a class table [K, F]; applying those sums to a parameter;
// the SG residual and its loss. All accumulate in float32 workspaces zeroed by the
// host; float atomics make the summation order (not the result's accuracy)
// nondeterministic.
#pragma once

#include <c10/cuda/CUDAException.h>

#include "device_utils.cuh"

namespace dni::cuda {

constexpr int kReduceCols = 32, kReduceRowThreads = 8, kReduceRowsPerBlock = 64;
constexpr int kElementwiseThreads = 256;

// sums[row(r), f] += src[r, f] over the batch, row(r) = labels[r] (a class table) or
// 0 (a bias: summed in registers first, one atomic per column and thread).
template <bool kGather>
__global__ void __launch_bounds__(kReduceCols * kReduceRowThreads)
    column_sum_kernel(const float* __restrict__ src, int64_t batch, int64_t feat,
                      Labels labels, float* sums) {
  const int64_t f = static_cast<int64_t>(blockIdx.x) * kReduceCols + threadIdx.x;
  if (f >= feat) return;
  float acc = 0.f;
  // Chunks of kReduceRowsPerBlock rows, strided by gridDim.y (capped at 65535).
  for (int64_t r_begin = static_cast<int64_t>(blockIdx.y) * kReduceRowsPerBlock; r_begin < batch;
       r_begin += static_cast<int64_t>(gridDim.y) * kReduceRowsPerBlock) {
    const int64_t r_end =
        r_begin + kReduceRowsPerBlock < batch ? r_begin + kReduceRowsPerBlock : batch;
    for (int64_t r = r_begin + threadIdx.y; r < r_end; r += kReduceRowThreads) {
      if constexpr (kGather) {
        atomicAdd(sums + label_at(labels, r) * feat + f, src[r * feat + f]);
      } else {
        acc += src[r * feat + f];
      }
    }
  }
  if constexpr (!kGather) atomicAdd(sums + f, acc);
}

// dst[j] ← apply_update(dst[j], scale · sums[j], step) for j < n.
template <typename P>
__global__ void apply_sums_kernel(P* dst, const float* __restrict__ sums, int64_t n,
                                  float scale, float step) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[j] = from_float<P>(apply_update(to_float(dst[j]), scale * sums[j], step));
  }
}

inline unsigned int elementwise_blocks(int64_t n) {
  const int64_t blocks = ceil_div(n, kElementwiseThreads);
  return static_cast<unsigned int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

// `dst` (a bias or class table, [rows(labels), F]) ← update by the batch column sums
// of src [B, F], scaled by `scale`.
template <typename P>
void reduce_and_apply(const float* src, int64_t batch, int64_t feat, const Labels& labels,
                      float* sums, P* dst, float scale, float step, cudaStream_t stream) {
  if (dst == nullptr || feat == 0) return;
  if (batch > 0) {
    const int64_t row_chunks = ceil_div(batch, kReduceRowsPerBlock);
    const dim3 grid(ceil_div(feat, kReduceCols), row_chunks < 65535 ? row_chunks : 65535);
    const dim3 block(kReduceCols, kReduceRowThreads);
    if (labels.data != nullptr) {
      column_sum_kernel<true><<<grid, block, 0, stream>>>(src, batch, feat, labels, sums);
    } else {
      column_sum_kernel<false><<<grid, block, 0, stream>>>(src, batch, feat, labels, sums);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const int64_t n = (labels.data != nullptr ? labels.num_classes : 1) * feat;
  apply_sums_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
      dst, sums, n, scale, step);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// e = sg_raw − target (float32 [B, F]) and loss_sum += Σ e².
template <typename T>
__global__ void residual_kernel(Strided sg_raw, Strided target, int64_t batch, int64_t feat,
                                float* __restrict__ e, float* loss_sum) {
  float sq = 0.f;
  const int64_t n = batch * feat;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = j / feat, f = j % feat;
    const float v = load<T>(sg_raw, r, f) - load<T>(target, r, f);
    e[j] = v;
    sq += v * v;
  }
  block_sum_atomic_add(sq, loss_sum);
}

// loss = loss_sum / B in the activation dtype (0 for an empty batch, like the CPU op).
template <typename T>
__global__ void finish_loss_kernel(const float* loss_sum, int64_t batch, T* loss) {
  *loss = from_float<T>(batch > 0 ? *loss_sum / static_cast<float>(batch) : 0.f);
}

// Traps on any out-of-range label of either table before the first kernel that writes
// a weight runs: a trapped kernel aborts every later launch on the stream. (static:
// this header is compiled into every kernels_<dtype>.cu.)
static __global__ void check_labels_kernel(Labels a, Labels b, int64_t batch) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < batch;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (a.data != nullptr) label_at(a, r);
    if (b.data != nullptr) label_at(b, r);
  }
}

inline void check_labels_on_device(const Labels& a, const Labels& b, int64_t batch,
                                   cudaStream_t stream) {
  if ((a.data == nullptr && b.data == nullptr) || batch == 0) return;
  check_labels_kernel<<<elementwise_blocks(batch), kElementwiseThreads, 0, stream>>>(a, b,
                                                                                    batch);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace dni::cuda
