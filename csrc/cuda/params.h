// The contract between the host side of the CUDA ops (linear_step.cpp, sg_update.cpp,
// compiled by the host compiler: checks, allocation, dispatch) and the kernels (the
// kernels_*.cu files, compiled by nvcc). Plain pointers and sizes only, so that the
// .cu files need no ATen headers and build fast.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "dni/math.h"

namespace dni::cuda {

// A [rows, cols] matrix read with arbitrary strides (in elements): inputs may be views.
struct Strided {
  const void* data = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 0;
};

// cDNI labels indexing the rows of a class table; `data == nullptr` means no table.
struct Labels {
  const int64_t* data = nullptr;
  int64_t stride = 0;
  int64_t num_classes = 0;
};

// One SG regression (reference.py::sg_update): e = sg_raw − target, loss = Σe²/B and
// the updates of A [F, F], a [F], C [K, F]. The *_dst pointers are the parameters
// ("sgd" mode, step = lr) or their .grad buffers ("grads" mode, step = −1, see
// math.h::apply_update); null where the parameter is absent.
struct SgRegressionParams {
  int64_t batch = 0, feat = 0;
  Strided h, sg_raw, target;  // target: sg_update only (linear_step's is its grad_x)
  Labels labels;
  void* weight_dst = nullptr;
  void* bias_dst = nullptr;
  void* table_dst = nullptr;
  float step = 0.f;
  void* loss = nullptr;  // 0-dim output in the activation dtype
  // float32 workspace from the host: e [B, F] (scratch), and the zeroed sums
  // loss_sum [1], bias_sum [F], table_sum [K, F]; weight_sum [F, F] is used (and
  // zeroed) by the single-launch path only, which cannot update A in a GEMM epilogue.
  float* e = nullptr;
  float* loss_sum = nullptr;
  float* bias_sum = nullptr;
  float* table_sum = nullptr;
  float* weight_sum = nullptr;
};

// One decoupled layer step (reference.py::linear_step). Outputs h, sg_raw [B, O] and
// grad_x [B, I] are contiguous, in the activation dtype; without compute_grad_x (then
// never chained) grad_x is neither computed nor written.
struct LinearStepParams {
  int64_t batch = 0, in = 0, out = 0;
  Activation act = Activation::kIdentity;
  Strided x;
  const void* weight = nullptr;  // read (forward, grad_x) before weight_dst is written
  void* weight_dst = nullptr;    // weight ("sgd") or weight_grad ("grads")
  const void* bias = nullptr;
  void* bias_dst = nullptr;
  const void* sg_weight = nullptr;
  const void* sg_bias = nullptr;
  const void* sg_table = nullptr;
  Labels labels;
  float sg_scale = 1.f, step = 0.f;
  void* h = nullptr;
  void* sg_raw = nullptr;
  void* grad_x = nullptr;
  bool compute_grad_x = true;
  bool chained = false;
  SgRegressionParams prev;  // the lower layer's SG, regressed toward grad_x
  // float32 workspace: g [B, O] (multi path scratch); zeroed sums weight_sum [O, I],
  // bias_sum [O] and the last-block counter (single path; multi uses bias_sum only).
  float* g = nullptr;
  float* weight_sum = nullptr;
  float* bias_sum = nullptr;
  unsigned int* counter = nullptr;
};

enum class Path { kSingle, kMulti };

// Which path a layer takes under DNI_CUDA_PATH=auto (see linear_step.cpp for the
// measurements); linear_step_single.cuh says why the single kernel's layers are limited
// to 256 features. Small batches give it too few blocks to beat the multi-launch path.
constexpr int64_t kSingleMaxFeatures = 256;
constexpr int64_t kSingleMinBatch = 2048;
inline bool prefers_single(int64_t batch, int64_t in, int64_t out) {
  return in <= kSingleMaxFeatures && out <= kSingleMaxFeatures && batch >= kSingleMinBatch;
}

// T: the activation dtype (float, c10::Half, c10::BFloat16); `params_fp32` selects
// float32 parameters ("master weights") instead of parameters of dtype T.
template <typename T>
void launch_linear_step(const LinearStepParams& p, Path path, bool params_fp32,
                        cudaStream_t stream);
template <typename T>
void launch_sg_update(const SgRegressionParams& p, bool params_fp32, cudaStream_t stream);

}  // namespace dni::cuda
