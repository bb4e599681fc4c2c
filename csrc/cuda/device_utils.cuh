// Small device helpers shared by the CUDA kernels: dtype conversion through float32
// (every kernel accumulates in float32), strided loads, warp/block sums.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "params.h"

namespace dni::cuda {

constexpr int kWarp = 32;

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v) {
  return static_cast<T>(v);
}

// Rounds through T, so a value reused after it is stored is the value the caller sees.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

template <typename T>
__device__ __forceinline__ float load(const Strided& m, int64_t row, int64_t col) {
  return to_float(static_cast<const T*>(m.data)[row * m.row_stride + col * m.col_stride]);
}

// Label of batch row r, range-checked on the device: the host does not read labels
// back (that would synchronise), so a bad label traps here, before any weight write.
__device__ __forceinline__ int64_t label_at(const Labels& y, int64_t r) {
  const int64_t v = y.data[r * y.stride];
  CUDA_KERNEL_ASSERT(v >= 0 && v < y.num_classes && "dni: label out of range");
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// atomicAdd(dst, Σ over the block of v). Every thread of the block must call it.
__device__ __forceinline__ void block_sum_atomic_add(float v, float* dst) {
  __shared__ float partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = (blockDim.x + kWarp - 1) / kWarp;
  v = warp_sum(v);
  __syncthreads();  // `partial` may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? partial[lane] : 0.f;
    v = warp_sum(v);
    if (lane == 0) atomicAdd(dst, v);
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace dni::cuda
