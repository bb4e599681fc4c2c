// The contract between the host side of the CUDA ops (linear_step.cpp, sg_update.cpp,
// compiled by the host compiler: checks, allocation, dispatch) and the kernels (the
// kernels_*.cu files, compiled by nvcc). Plain pointers and sizes only, so that the
// .cu files need no ATen headers and build fast.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "dni/math.h"

namespace dni::cuda {

// A [rows, cols] matrix read with arbitrary strides (in elements): inputs may be views.
struct Strided {
  const void* data = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 0;
};

// The element type of a matrix handed to cublas_product.
enum class ElementType { kFloat32, kFloat16, kBFloat16 };

// A [rows, cols] matrix for cublas_product: element (r, c) at data[r·s_r + c·s_c].
struct Matrix {
  const void* data = nullptr;
  int64_t s_r = 0, s_c = 0;
  ElementType type = ElementType::kFloat32;
};

// out [m, n] (float32, row-major, contiguous) = a [m, k] · b [k, n], in float32 on
// cuBLAS (through ATen's matmul: the current stream, ATen's handle, its TF32 setting;
// dtypes as host.h::float_product_out, operands with no unit stride copied first). Host code, defined in
// cublas_product.cpp (compiled by the host compiler, so these .cu files stay free of
// ATen headers); the kernels' launchers call it between their own launches.
void cublas_product(const Matrix& a, const Matrix& b, int64_t m, int64_t n, int64_t k,
                    float* out);

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
  // Non-null: the update product eᵀh runs on cuBLAS into this float32 [F, F] scratch,
  // then its epilogue as a separate kernel (gemm.cuh::product); null: the tiled GEMM.
  float* product_scratch = nullptr;
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
  // float32 workspace: g [B, O] (multi and cuBLAS paths); zeroed sums weight_sum [O, I],
  // bias_sum [O] and the last-block counter (single path; multi uses bias_sum only).
  float* g = nullptr;
  float* weight_sum = nullptr;
  float* bias_sum = nullptr;
  unsigned int* counter = nullptr;
  // The cuBLAS path's float32 scratch for one product's result at a time (the largest
  // of B·O, B·I, O·I); null on the other paths.
  float* product_scratch = nullptr;
};

// kSingle: one fused kernel. kMulti: a tiled GEMM per product with the stage's
// elementwise work in its epilogue. kCublas: kMulti's stages with each product on
// cuBLAS and its epilogue as a separate elementwise kernel.
enum class Path { kSingle, kMulti, kCublas };

// Which path a layer takes under DNI_CUDA_PATH=auto, from three `gpu_check.sh paths`
// sweeps on an H100 (float32, relu, I = O = 64-1024, batch 32-4096; linear_step.cpp
// gives the numbers). linear_step_single.cuh says why the single kernel's layers are
// limited to 256 features.
//
// The single kernel wins on narrow layers: at most 64 features at any batch, at most
// 128 from batch 512 (below that it and multi were within 25 % either way). It is
// checked before the cuBLAS rule (width 128, batch 2048: 84 us against cuBLAS's
// 243-299) but only up to 2^26 multiply-adds, the largest measured: each of its blocks
// adds O·I (+ I·I chained) partial sums atomically, which grows with the batch.
constexpr int64_t kSingleMaxFeatures = 256;
constexpr int64_t kSingleMaxWork = int64_t{1} << 26;
// `width`: max(in, out); `largest_product_work`: largest_product_work() below.
inline bool prefers_single(int64_t batch, int64_t width, int64_t largest_product_work) {
  return (width <= 64 || (width <= 128 && batch >= 512)) && largest_product_work <= kSingleMaxWork;
}

// cuBLAS (the products through ATen, each epilogue a separate kernel) from 512 features
// or 2^26 multiply-adds in the largest product, for linear_step and sg_update alike;
// the tiled GEMM (multi) below. The tiled GEMM runs at about a third of cuBLAS's float32
// rate and loses as soon as its reduction is long: at width 512 cuBLAS won at every
// batch (B = 32: 66-169 us against 186-188), at width 256 only from 2^26 (B = 512,
// 2^25: multi 144-145 us against 159-226; B = 1024: 184-187 against 75-161).
// Small cuBLAS calls are host-bound and vary most between runs (60-310 us).
constexpr int64_t kCublasMinWidth = 512;
constexpr int64_t kCublasMinWork = int64_t{1} << 26;
inline bool prefers_cublas(int64_t width, int64_t largest_product_work) {
  return width >= kCublasMinWidth || largest_product_work >= kCublasMinWork;
}

// linear_step's largest product: B·I·O (forward, grad_x, update), B·O² (the SG) or,
// chained, B·I² (the lower layer's SG regression). dni_kernels/triton/linear_step.py
// uses the same rule.
inline int64_t largest_product_work(int64_t batch, int64_t in, int64_t out, bool chained) {
  return batch * std::max({in * out, out * out, chained ? in * in : int64_t{0}});
}

// T: the activation dtype (float, c10::Half, c10::BFloat16); `params_fp32` selects
// float32 parameters ("master weights") instead of parameters of dtype T.
template <typename T>
void launch_linear_step(const LinearStepParams& p, Path path, bool params_fp32,
                        cudaStream_t stream);
template <typename T>
void launch_sg_update(const SgRegressionParams& p, bool params_fp32, cudaStream_t stream);

}  // namespace dni::cuda
