// sg_update's CUDA kernel registration (dni_kernels/reference.py::sg_update): the
// multi-launch SG regression of sg_regression.cuh (residual, eᵀh product with the
// update in its epilogue, column sums). A standalone regression has no forward pass to
// fuse with, so there is no single-launch variant. The product is the tiled GEMM, or
// cuBLAS with DNI_CUDA_PATH=cublas, and under auto (the default) by linear_step's rule
// (params.h::prefers_cublas: from F = 512 or 2^26 multiply-adds, B·F·F; on the H100 the
// tiled form won at 32×256 and cuBLAS at 256×1024 and 1024×2048); single and multi mean
// the tiled GEMM.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>

#include "dni/checks.h"
#include "host.h"
#include "params.h"

namespace dni::cuda {
namespace {

bool use_cublas(int64_t batch, int64_t feat) {
  const std::string mode = cuda_path_setting();
  if (batch == 0) return false;  // eᵀh has K = 0: the tiled GEMM adds zeros
  return mode == "cublas" || (mode == "auto" && prefers_cublas(feat, batch * feat * feat));
}

Tensor sg_update_cuda(const Tensor& h, const Tensor& sg_raw, const Tensor& target,
                      const OptTensor& labels, Tensor& sg_weight, const OptTensor& sg_bias,
                      const OptTensor& sg_table, const OptTensor& sg_weight_grad,
                      const OptTensor& sg_bias_grad, const OptTensor& sg_table_grad,
                      double lr) {
  // Label values are checked on the device (see device_utils.cuh::label_at).
  const SgGroup group{h,        sg_raw,         labels,       sg_weight,    sg_bias,
                      sg_table, sg_weight_grad, sg_bias_grad, sg_table_grad};
  check_sg_group(group, "", &target, lr, DtypePolicy{/*allow_half_activations=*/true},
                 /*check_label_values=*/false);
  TORCH_CHECK(h.is_cuda(), "dni: sg_update CUDA kernel got h on ", h.device());
  check_cuda_dtype(h, "sg_update");

  const c10::cuda::CUDAGuard guard(h.device());
  Tensor loss = at::empty({}, h.options());
  SgRegressionParams p = sg_regression_params(group, lr);
  p.target = strided(target);
  p.loss = loss.data_ptr();
  const int64_t batch = p.batch, feat = p.feat, classes = p.labels.num_classes;
  const bool cublas = use_cublas(batch, feat);
  auto workspace = allocate_workspace(h, [&](Carver& scratch, Carver& sums) {
    p.e = scratch.take(batch * feat);
    if (cublas) p.product_scratch = scratch.take(feat * feat);
    p.loss_sum = sums.take(1);
    p.bias_sum = sums.take(feat);
    p.table_sum = sums.take(classes * feat);
  });

  const bool fp32_params = params_fp32(h, sg_weight);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_activation_type(h.scalar_type(), [&](auto type) {
    launch_sg_update<decltype(type)>(p, fp32_params, stream);
  });
  return loss;
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CUDA, m) { m.impl("sg_update", &sg_update_cuda); }

}  // namespace dni::cuda
