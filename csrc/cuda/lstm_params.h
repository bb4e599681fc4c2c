// The contract between the host side of the CUDA LSTM window ops (lstm_window.cpp,
// host compiler) and their kernels (lstm_window_kernels.cu, nvcc): plain pointers, strides and
// sizes, so the .cu file needs no ATen headers and builds fast.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "params.h"

namespace dni::cuda {

// Where a step's recurrent GEMM runs (lstm_window_kernels.cu says why there are two).
enum class LstmStepGemm { kInKernel, kCublas };

// One forward step t. gates [B, 4H] (contiguous) holds x_t W_ihᵀ + b on entry and the
// activated (i, f, g, o) on exit; c, h [B, H] (contiguous) are c_t and h_t. h_prev and
// c_prev are strided (h0, c0 may be views); w_hh [4H, H] too. With kCublas the kernel
// reads h_{t−1} W_hhᵀ from `recurrent` instead of computing it.
struct LstmForwardStep {
  int64_t batch = 0, hidden = 0;
  Strided h_prev, c_prev, w_hh;
  const float* recurrent = nullptr;  // [B, 4H] contiguous
  void* gates = nullptr;
  void* c = nullptr;
  void* h = nullptr;
};

// One BPTT step t. dh_t = dz_{t+1} W_hh (computed in the kernel from dz_next with
// kInKernel; read from dh_next, cuBLAS's product, with kCublas), or grad_h_end at the
// window's last step (dz_next == dh_next == nullptr; grad_h_end.data may be null
// too), plus grad_hs[t]; dc [B, H] float32 holds the carry ∂L/∂c_t (before grad_cs[t])
// on entry and ∂L/∂c_{t−1} on exit. Writes dz_t [B, 4H]. Absent optional operands
// have data == nullptr.
struct LstmBackwardStep {
  int64_t batch = 0, hidden = 0;
  const void* dz_next = nullptr;  // [B, 4H] contiguous
  const float* dh_next = nullptr;  // [B, H] contiguous
  Strided w_hh, c_prev, grad_h_end, grad_h, grad_c;
  const void* gates = nullptr;  // [B, 4H] contiguous, activated
  const void* c = nullptr;      // [B, H] contiguous, c_t
  float* dc = nullptr;
  void* dz = nullptr;
};

// T: the activation dtype (float, c10::Half, c10::BFloat16); instantiated in
// lstm_window_kernels.cu.
template <typename T>
void launch_lstm_forward_step(const LstmForwardStep& p, LstmStepGemm gemm, cudaStream_t stream);
template <typename T>
void launch_lstm_backward_step(const LstmBackwardStep& p, LstmStepGemm gemm,
                               cudaStream_t stream);

}  // namespace dni::cuda
