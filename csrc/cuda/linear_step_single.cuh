// linear_step on CUDA for small layers, in ONE kernel launch (after the host's
// zero-fill of its workspace): launch latency, not arithmetic, bounds such layers.
//
// Each block owns kRows batch rows and computes, for them, z, h, ĝ_raw, g, grad_x and
// (chained) the lower layer's residual e, then adds its rows' share of every batch
// reduction (gᵀx, Σg, eᵀh_prev, Σe, e into C_prev[y], Σe²) into float32 workspace
// sums with atomics. The LAST block to finish, detected with an atomic counter after
// a __threadfence(), applies all the updates (W, b, A_prev, a_prev, C_prev, loss).
//
// Why "last block finishes" rather than a persistent cooperative kernel with a grid
// barrier: grad_x must read W before anyone updates it, and here only the last block
// writes W, after every block has counted itself finished — so no block can still be
// reading W. It needs no cooperative launch (whose grid must fit co-resident on the
// device, a limit that depends on the GPU and on other work sharing it) and no
// grid-wide barrier that every block must reach. The price is the serial tail (one
// block applies O·I + I·I updates) and O·I + I·I atomics per block, which is why
// this path is for small layers only (in, out <= 256, so a block's rows fit in
// 40 KiB of shared memory); params.h::prefers_single takes it under auto only for
// layers of at most 128 features, where it measured fastest.
//
// The counter lives in the per-call workspace the host zero-fills (at::zeros on the
// current stream), together with the sums: nothing is reset afterwards, and calls on
// different streams never share a counter.
//
// Labels are range-checked (CUDA_KERNEL_ASSERT) by every block before it counts
// itself finished; a trapped block never counts, so no weight is written.
//
// Optional bias / SG bias / cDNI table / prev chain / grad_x (compute_grad_x) are
// tested at run time: the tests are uniform across the grid and outside the inner
// loops, and templating them would multiply this kernel's instantiations by 32
// (activation and dtypes are templates).
#pragma once

#include <c10/cuda/CUDAException.h>

#include "device_utils.cuh"

namespace dni::cuda {

constexpr int kSingleRows = 8, kSingleThreads = 256;
constexpr int kSingleWarps = kSingleThreads / kWarp;
static_assert(kSingleRows <= kWarp, "lane r finishes row r");

// acc[lane] without a dynamically indexed (local-memory) array access.
__device__ __forceinline__ float pick_row(const float (&acc)[kSingleRows], int lane) {
  float v = 0.f;
#pragma unroll
  for (int r = 0; r < kSingleRows; ++r) v = r == lane ? acc[r] : v;
  return v;
}

// out[r] = Σ_k in_s[r, k] · M[o, k] for this block's rows (M row-major [*, K]), a warp
// per o with lanes along k (coalesced reads of M's row), summed across the warp.
template <typename P>
__device__ __forceinline__ void row_dot(const float* in_s, const P* m_row, int64_t k_len,
                                        float (&acc)[kSingleRows]) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int r = 0; r < kSingleRows; ++r) acc[r] = 0.f;
  for (int64_t k = lane; k < k_len; k += kWarp) {
    const float w = to_float(m_row[k]);
#pragma unroll
    for (int r = 0; r < kSingleRows; ++r) acc[r] = fmaf(in_s[r * k_len + k], w, acc[r]);
  }
#pragma unroll
  for (int r = 0; r < kSingleRows; ++r) acc[r] = warp_sum(acc[r]);
}

template <typename P>
__device__ __forceinline__ void apply_sums(P* dst, const float* sums, int64_t n, float scale,
                                           float step) {
  for (int64_t j = threadIdx.x; j < n; j += kSingleThreads) {
    // __ldcg: the sums were written by other blocks' atomics (in L2); never via L1.
    dst[j] = from_float<P>(apply_update(to_float(dst[j]), scale * __ldcg(sums + j), step));
  }
}

// dst[a·nv + c] += Σ_r u[r, a] · v[r, c] over the block's kSingleRows shared-memory rows
// (zero-padded past the batch): its share of a weight gradient such as gᵀx.
__device__ __forceinline__ void add_outer_product_sum(const float* u, int64_t nu,
                                                      const float* v, int64_t nv,
                                                      float* dst) {
  for (int64_t j = threadIdx.x; j < nu * nv; j += kSingleThreads) {
    const int64_t a = j / nv, c = j % nv;
    float s = 0.f;
#pragma unroll
    for (int r = 0; r < kSingleRows; ++r) s = fmaf(u[r * nu + a], v[r * nv + c], s);
    atomicAdd(dst + j, s);
  }
}

// dst[a] += Σ_r u[r, a]: the block's share of a bias gradient.
__device__ __forceinline__ void add_column_sum(const float* u, int64_t nu, float* dst) {
  for (int64_t a = threadIdx.x; a < nu; a += kSingleThreads) {
    float s = 0.f;
#pragma unroll
    for (int r = 0; r < kSingleRows; ++r) s += u[r * nu + a];
    atomicAdd(dst + a, s);
  }
}

template <typename T, typename P, Activation act>
__global__ void __launch_bounds__(kSingleThreads)
    linear_step_single_kernel(const LinearStepParams p) {
  constexpr int R = kSingleRows;
  extern __shared__ float smem[];
  const int64_t batch = p.batch, in = p.in, out = p.out;
  const SgRegressionParams& q = p.prev;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rows = static_cast<int>(batch - r0 < R ? batch - r0 : R);
  const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
  float* x_s = smem;             // [R, I] x rows
  float* ph_s = x_s + R * in;    // [R, I] prev_h rows (chained)
  float* e_s = ph_s + R * in;    // [R, I] prev residual (chained)
  float* h_s = e_s + R * in;     // [R, O]
  float* g_s = h_s + R * out;    // [R, O]
  const auto* weight = static_cast<const P*>(p.weight);

  // Rows past the batch are zero in every staged array, so they add nothing below.
  for (int64_t j = tid; j < R * in; j += kSingleThreads) {
    const int r = static_cast<int>(j / in);
    const int64_t i = j % in;
    x_s[j] = r < rows ? load<T>(p.x, r0 + r, i) : 0.f;
    if (p.chained) ph_s[j] = r < rows ? load<T>(q.h, r0 + r, i) : 0.f;
  }
  __syncthreads();

  // z = x Wᵀ + b, h = φ(z).
  const auto* bias = static_cast<const P*>(p.bias);
  for (int64_t o = warp; o < out; o += kSingleWarps) {
    float acc[R];
    row_dot(x_s, weight + o * in, in, acc);
    if (lane < R) {
      float hv = 0.f;
      if (lane < rows) {
        const float z = pick_row(acc, lane) + (bias != nullptr ? to_float(bias[o]) : 0.f);
        const T ht = from_float<T>(activation_forward<act>(z));
        static_cast<T*>(p.h)[(r0 + lane) * out + o] = ht;
        hv = to_float(ht);
      }
      h_s[lane * out + o] = hv;
    }
  }
  __syncthreads();

  // ĝ_raw = h Aᵀ + a + C[y], g = s·ĝ_raw·φ′.
  const auto* sg_weight = static_cast<const P*>(p.sg_weight);
  const auto* sg_bias = static_cast<const P*>(p.sg_bias);
  const auto* table = static_cast<const P*>(p.sg_table);
  for (int64_t o = warp; o < out; o += kSingleWarps) {
    float acc[R];
    row_dot(h_s, sg_weight + o * out, out, acc);
    if (lane < R) {
      float gv = 0.f;
      if (lane < rows) {
        float v = pick_row(acc, lane) + (sg_bias != nullptr ? to_float(sg_bias[o]) : 0.f);
        if (table != nullptr) v += to_float(table[label_at(p.labels, r0 + lane) * out + o]);
        const T raw = from_float<T>(v);
        static_cast<T*>(p.sg_raw)[(r0 + lane) * out + o] = raw;
        gv = pre_activation_gradient<act>(to_float(raw), h_s[lane * out + o], p.sg_scale);
      }
      g_s[lane * out + o] = gv;
    }
  }
  __syncthreads();

  // grad_x = g W (W is only written by the last block, below), a thread per column i;
  // chained (which implies compute_grad_x): e = prev_sg_raw − grad_x and its squares.
  float sq = 0.f;
  const int64_t grad_x_cols = p.compute_grad_x ? in : 0;
  for (int64_t i = tid; i < grad_x_cols; i += kSingleThreads) {
    float acc[R] = {};
    for (int64_t o = 0; o < out; ++o) {
      const float w = to_float(weight[o * in + i]);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = fmaf(g_s[r * out + o], w, acc[r]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float ev = 0.f;
      if (r < rows) {
        const T gx = from_float<T>(acc[r]);
        static_cast<T*>(p.grad_x)[(r0 + r) * in + i] = gx;
        if (p.chained) {
          ev = load<T>(q.sg_raw, r0 + r, i) - to_float(gx);
          sq += ev * ev;
        }
      }
      if (p.chained) e_s[r * in + i] = ev;
    }
  }
  if (p.chained) block_sum_atomic_add(sq, q.loss_sum);  // syncs the block
  __syncthreads();

  // This block's share of the batch reductions.
  add_outer_product_sum(g_s, out, x_s, in, p.weight_sum);
  if (p.bias_dst != nullptr) add_column_sum(g_s, out, p.bias_sum);
  if (p.chained) {
    add_outer_product_sum(e_s, in, ph_s, in, q.weight_sum);
    if (q.bias_dst != nullptr) add_column_sum(e_s, in, q.bias_sum);
    if (q.table_dst != nullptr) {
      for (int64_t j = tid; j < rows * in; j += kSingleThreads) {
        const int64_t r = j / in, i = j % in;
        atomicAdd(q.table_sum + label_at(q.labels, r0 + r) * in + i, e_s[j]);
      }
    }
  }

  // Publish this block's sums, then count it finished; the last one applies updates.
  __threadfence();
  __syncthreads();
  __shared__ bool is_last;
  if (tid == 0) is_last = atomicAdd(p.counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();

  apply_sums(static_cast<P*>(p.weight_dst), p.weight_sum, out * in, 1.f, p.step);
  if (p.bias_dst != nullptr) apply_sums(static_cast<P*>(p.bias_dst), p.bias_sum, out, 1.f, p.step);
  if (p.chained) {
    const float scale = 2.f / static_cast<float>(batch);
    apply_sums(static_cast<P*>(q.weight_dst), q.weight_sum, in * in, scale, q.step);
    if (q.bias_dst != nullptr) apply_sums(static_cast<P*>(q.bias_dst), q.bias_sum, in, scale, q.step);
    if (q.table_dst != nullptr) {
      apply_sums(static_cast<P*>(q.table_dst), q.table_sum, q.labels.num_classes * in, scale,
                 q.step);
    }
    if (tid == 0) *static_cast<T*>(q.loss) = from_float<T>(__ldcg(q.loss_sum) / batch);
  }
}

// Shared memory of one block: x, prev_h, e rows [R, I] and h, g rows [R, O].
inline size_t single_smem_bytes(int64_t in, int64_t out) {
  return sizeof(float) * kSingleRows * (3 * in + 2 * out);
}

template <typename T, typename P, Activation act>
void run_single(const LinearStepParams& p, cudaStream_t stream) {
  const int64_t blocks = ceil_div(p.batch, kSingleRows);
  linear_step_single_kernel<T, P, act>
      <<<blocks, kSingleThreads, single_smem_bytes(p.in, p.out), stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace dni::cuda
