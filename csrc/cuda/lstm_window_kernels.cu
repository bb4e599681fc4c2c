// CUDA kernels of the LSTM window ops (host side: lstm_window.cpp). One launch per
// time step, in one of two forms (LstmStepGemm, chosen by the host per window):
//   kInKernel  the recurrent GEMM as a shared-memory-tiled FMA loop (float32
//              accumulation, no tensor cores) with the gate math of
//              csrc/include/dni/lstm_math.h (the functions the CPU kernels run) fused
//              into its epilogue, so the pre-activations never go back to memory. One
//              launch per step: best where a step's GEMM is small and launches dominate.
//   kCublas    the host runs the recurrent GEMM through cuBLAS first, into a float32
//              buffer (so half-precision pre-activations are rounded no more often than
//              in kInKernel), and the same kernels, compiled without their GEMM loop,
//              apply the gate math: two launches per step, but the GEMM at cuBLAS's
//              rate, which the FMA loop reaches only a fraction of at large hidden sizes.
// The window-wide GEMMs are cuBLAS calls on the host side either way.
//
// Per-step launches, not a persistent multi-step kernel: every block of step t+1 reads
// all of h_t, so a persistent kernel needs a grid-wide barrier per step (cooperative
// launch, a grid sized to stay co-resident) or W_hh held on chip across steps; at the
// sizes targeted (B·H ≥ 32·256) a step's GEMM outweighs a launch, so the simple form
// was kept. A block is 16×16 threads; each thread owns one (row b, unit j).
#include <c10/cuda/CUDAException.h>

#include "device_utils.cuh"
#include "dni/lstm_math.h"
#include "dni/static_switch.h"
#include "lstm_params.h"

namespace dni::cuda {
namespace {

constexpr int kTile = 16;  // rows, units and k-step of a block
constexpr int kThreads = kTile * kTile;

// z_t = gates_t (x_t W_ihᵀ + b) + h_{t−1} W_hhᵀ for the four gate blocks of the block's
// units (four accumulators share each staged h tile), then c_t, h_t. Without kGemm,
// the accumulators start from p.recurrent (cuBLAS's h_{t−1} W_hhᵀ) instead.
template <typename T, bool kGemm>
__global__ void __launch_bounds__(kThreads) lstm_forward_step_kernel(LstmForwardStep p) {
  __shared__ float h_s[kTile][kTile + 1];     // [row][k]
  __shared__ float w_s[4][kTile][kTile + 1];  // [gate][unit][k]
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t H = p.hidden;
  const int64_t b0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t b = b0 + ty, j = j0 + tx;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t k0 = 0; kGemm && k0 < H; k0 += kTile) {
    const int64_t k = k0 + tx;
    h_s[ty][tx] = (b < p.batch && k < H) ? load<T>(p.h_prev, b, k) : 0.f;
    // Unit j0 + ty of gate q is row q·H + j0 + ty of W_hh.
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      w_s[q][ty][tx] = (j0 + ty < H && k < H) ? load<T>(p.w_hh, q * H + j0 + ty, k) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTile; ++kk) {
      const float hv = h_s[ty][kk];
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] = fmaf(hv, w_s[q][tx][kk], acc[q]);
    }
    __syncthreads();
  }
  if (b >= p.batch || j >= H) return;
  if constexpr (!kGemm) {
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[q] = p.recurrent[b * 4 * H + q * H + j];
  }
  T* z = static_cast<T*>(p.gates) + b * 4 * H + j;
  LstmGates<float> a;
  float c, h;
  lstm_unit_forward(acc[0] + to_float(z[0]), acc[1] + to_float(z[H]), acc[2] + to_float(z[2 * H]),
                    acc[3] + to_float(z[3 * H]), load<T>(p.c_prev, b, j), a, c, h);
  z[0] = from_float<T>(a.i);
  z[H] = from_float<T>(a.f);
  z[2 * H] = from_float<T>(a.g);
  z[3 * H] = from_float<T>(a.o);
  static_cast<T*>(p.c)[b * H + j] = from_float<T>(c);
  static_cast<T*>(p.h)[b * H + j] = from_float<T>(h);
}

// dh_t[b, j] = Σ_k dz_{t+1}[b, k] W_hh[k, j] over K = 4H (skipped at the last step),
// then the gate backward for (b, j). Without kGemm, dh_t is read from p.dh_next
// (cuBLAS's product) instead. kGradH/kGradC: in-window gradients present.
template <typename T, bool kGemm, bool kGradH, bool kGradC>
__global__ void __launch_bounds__(kThreads) lstm_backward_step_kernel(LstmBackwardStep p) {
  __shared__ float a_s[kTile][kTile + 1];  // [row][k] of dz_{t+1}
  __shared__ float w_s[kTile][kTile + 1];  // [k][unit] of W_hh
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t H = p.hidden, K = 4 * p.hidden;
  const int64_t b0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t b = b0 + ty, j = j0 + tx;
  const T* dz_next = static_cast<const T*>(p.dz_next);
  float dh = 0.f;
  if constexpr (kGemm) {
    if (dz_next != nullptr) {  // uniform across the grid: no divergence
      for (int64_t k0 = 0; k0 < K; k0 += kTile) {
        a_s[ty][tx] = (b < p.batch && k0 + tx < K) ? to_float(dz_next[b * K + k0 + tx]) : 0.f;
        w_s[ty][tx] = (k0 + ty < K && j < H) ? load<T>(p.w_hh, k0 + ty, j) : 0.f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTile; ++kk) dh = fmaf(a_s[ty][kk], w_s[kk][tx], dh);
        __syncthreads();
      }
    }
  }
  if (b >= p.batch || j >= H) return;
  if constexpr (!kGemm) {
    if (p.dh_next != nullptr) dh = p.dh_next[b * H + j];
  }
  // The window's last step (the host passes neither dz_next nor dh_next there): the
  // boundary gradient.
  if (dz_next == nullptr && p.dh_next == nullptr && p.grad_h_end.data != nullptr) {
    dh = load<T>(p.grad_h_end, b, j);
  }
  if constexpr (kGradH) dh += load<T>(p.grad_h, b, j);
  float dc = p.dc[b * H + j];
  if constexpr (kGradC) dc += load<T>(p.grad_c, b, j);
  const T* a = static_cast<const T*>(p.gates) + b * 4 * H + j;
  const LstmGates<float> g{to_float(a[0]), to_float(a[H]), to_float(a[2 * H]), to_float(a[3 * H])};
  float dzi, dzf, dzg, dzo;
  p.dc[b * H + j] = lstm_unit_backward(g, to_float(static_cast<const T*>(p.c)[b * H + j]),
                                       load<T>(p.c_prev, b, j), dh, dc, dzi, dzf, dzg, dzo);
  T* d = static_cast<T*>(p.dz) + b * 4 * H + j;
  d[0] = from_float<T>(dzi);
  d[H] = from_float<T>(dzf);
  d[2 * H] = from_float<T>(dzg);
  d[3 * H] = from_float<T>(dzo);
}

dim3 step_grid(int64_t batch, int64_t hidden) {
  return dim3(static_cast<unsigned>(ceil_div(hidden, kTile)),
              static_cast<unsigned>(ceil_div(batch, kTile)));
}

}  // namespace

template <typename T>
void launch_lstm_forward_step(const LstmForwardStep& p, LstmStepGemm gemm,
                              cudaStream_t stream) {
  if (p.batch == 0 || p.hidden == 0) return;  // an empty grid is not a valid launch
  DNI_BOOL_SWITCH(gemm == LstmStepGemm::kInKernel, kGemm, [&] {
    lstm_forward_step_kernel<T, kGemm><<<step_grid(p.batch, p.hidden), kThreads, 0, stream>>>(p);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_lstm_backward_step(const LstmBackwardStep& p, LstmStepGemm gemm,
                               cudaStream_t stream) {
  if (p.batch == 0 || p.hidden == 0) return;
  DNI_BOOL_SWITCH(gemm == LstmStepGemm::kInKernel, kGemm, [&] {
    DNI_BOOL_SWITCH(p.grad_h.data != nullptr, kGradH, [&] {
      DNI_BOOL_SWITCH(p.grad_c.data != nullptr, kGradC, [&] {
        lstm_backward_step_kernel<T, kGemm, kGradH, kGradC>
            <<<step_grid(p.batch, p.hidden), kThreads, 0, stream>>>(p);
      });
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define DNI_INSTANTIATE_LSTM_LAUNCHERS(T)                                                \
  template void launch_lstm_forward_step<T>(const LstmForwardStep&, LstmStepGemm,       \
                                            cudaStream_t);                              \
  template void launch_lstm_backward_step<T>(const LstmBackwardStep&, LstmStepGemm,     \
                                             cudaStream_t);
DNI_INSTANTIATE_LSTM_LAUNCHERS(float)
DNI_INSTANTIATE_LSTM_LAUNCHERS(c10::Half)
DNI_INSTANTIATE_LSTM_LAUNCHERS(c10::BFloat16)

}  // namespace dni::cuda
