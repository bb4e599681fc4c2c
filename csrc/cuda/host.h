// Host-side helpers of the CUDA ops (linear_step.cpp, sg_update.cpp): turning checked
// tensors into the kernels' plain parameters (params.h), the workspace, the dtype
// dispatch. Compiled by the host compiler.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <string>

#include "dni/checks.h"
#include "dni/settings.h"
#include "params.h"

namespace dni::cuda {

inline Strided strided(const Tensor& t) { return {t.data_ptr(), t.stride(0), t.stride(1)}; }

inline void* data_or_null(const OptTensor& t) { return t.has_value() ? t->data_ptr() : nullptr; }

inline Labels labels_of(const OptTensor& labels, const OptTensor& table) {
  if (!table.has_value()) return {};
  return {labels->data_ptr<int64_t>(), labels->stride(0), table->size(0)};
}

// The CUDA kernels take float32, float16 or bfloat16 activations; float64 (allowed
// by the shared checks for the CPU kernels) is refused before anything is written.
inline void check_cuda_dtype(const Tensor& act, const char* op) {
  const auto dt = act.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, "dni: ", op,
              " on CUDA takes float32, float16 or bfloat16 activations, got ", dt,
              " (use the CPU kernels or dni_kernels.reference for float64)");
}

// $DNI_CUDA_PATH (read on every call, default "auto"), checked: auto, single, multi
// or cublas. linear_step.cpp and sg_update.cpp say what each means for their op.
inline std::string cuda_path_setting() {
  return env_setting("DNI_CUDA_PATH", {"single", "multi", "cublas"});
}

// out (float32, [M, N]) = a · b on cuBLAS, accumulated in float32 and never rounded to
// a half dtype: float32 operands as they are, two half operands of one dtype through
// cuBLAS's float32-output form, mixed ones (half activations, float32 parameters) as
// float32 copies.
inline void float_product_out(Tensor& out, const Tensor& a, const Tensor& b) {
  if (a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat) {
    at::mm_out(out, a, b);
  } else if (a.scalar_type() == b.scalar_type()) {
    at::mm_out(out, a, b, at::kFloat);
  } else {
    at::mm_out(out, a.to(at::kFloat), b.to(at::kFloat));
  }
}

// Half activations with float32 parameters ("master weights")? (checks.cpp allows
// only that mix or equal dtypes.)
inline bool params_fp32(const Tensor& act, const Tensor& param) {
  return act.scalar_type() != at::kFloat && param.scalar_type() == at::kFloat;
}

// Calls f(T{}) with T the C++ type of an activation dtype checked by check_cuda_dtype.
template <typename F>
void with_activation_type(at::ScalarType dt, F&& f) {
  switch (dt) {
    case at::kHalf:
      return f(c10::Half{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    default:
      return f(float{});
  }
}

// Hands out consecutive float32 regions of one buffer. With a null base it only
// counts, so a layout function runs once to size the buffer and once to carve it.
class Carver {
 public:
  explicit Carver(float* base) : base_(base) {}
  // Every region starts 16-byte aligned, as cuBLAS's vectorised kernels want the
  // product scratch (4 floats; the allocator aligns the base).
  float* take(int64_t n) {
    float* p = base_ != nullptr ? base_ + used_ : nullptr;
    used_ += (n + 3) / 4 * 4;
    return p;
  }
  int64_t used() const { return used_; }

 private:
  float* base_;
  int64_t used_ = 0;
};

// Float32 workspaces on the op's device from the caching allocator (ordered on the
// current stream): `scratch` uninitialised, `sums` zeroed. layout(Carver& scratch,
// Carver& sums) assigns the regions; it runs twice (size, then carve).
template <typename Layout>
std::pair<Tensor, Tensor> allocate_workspace(const Tensor& like, Layout&& layout) {
  Carver count_scratch(nullptr), count_sums(nullptr);
  layout(count_scratch, count_sums);
  const auto opts = like.options().dtype(at::kFloat);
  Tensor scratch = at::empty({count_scratch.used()}, opts);
  Tensor sums = at::zeros({count_sums.used()}, opts);
  Carver scratch_carver(scratch.data_ptr<float>()), sums_carver(sums.data_ptr<float>());
  layout(scratch_carver, sums_carver);
  return {scratch, sums};
}

// The parameters of a checked SG group, minus its target, loss and workspace: the
// parameters themselves ("sgd" mode, step lr) or their .grad buffers (step −1).
inline SgRegressionParams sg_regression_params(const SgGroup& g, double lr) {
  const bool grads_mode = g.sg_weight_grad.has_value();
  SgRegressionParams p;
  p.batch = g.h.size(0);
  p.feat = g.h.size(1);
  p.h = strided(g.h);
  p.sg_raw = strided(g.sg_raw);
  p.labels = labels_of(g.labels, g.sg_table);
  p.weight_dst = grads_mode ? g.sg_weight_grad->data_ptr() : g.sg_weight.data_ptr();
  p.bias_dst = data_or_null(grads_mode ? g.sg_bias_grad : g.sg_bias);
  p.table_dst = data_or_null(grads_mode ? g.sg_table_grad : g.sg_table);
  p.step = grads_mode ? -1.f : static_cast<float>(lr);
  return p;
}

}  // namespace dni::cuda
