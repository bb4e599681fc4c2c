// linear_step's CUDA kernel registration (dni_kernels/reference.py::linear_step):
// checks, outputs, workspace, and the choice between the three CUDA paths.
//
// Dispatch rule ($DNI_CUDA_PATH, read on every call; default "auto"):
//   single  one fused kernel (linear_step_single.cuh); needs in, out <= 256.
//   multi   tiled GEMMs with fused epilogues (linear_step_multi.cuh); any size.
//   cublas  multi's stages with every product on cuBLAS, each epilogue a separate
//           elementwise kernel; any size.
//   auto    single for narrow layers (max(in, out) <= 64, or <= 128 from batch 512,
//           up to 2^26 multiply-adds), else cublas from 512 features or 2^26
//           multiply-adds in the largest product (B·I·O, B·O² or, chained, B·I²:
//           params.h::largest_product_work), else multi. An empty batch always takes
//           multi (no rows, no blocks).
// The single path's feature limit is set by construction (its shared memory). The
// rest is measured (`scripts/gpu_check.sh paths`, H100, float32, relu, I = O, batch
// 32-4096, three sweeps; params.h says why): at width 64 the single kernel took 40-55 us
// at every batch (multi 49-378, cuBLAS 116-309); at width 128 it took 79-138 us from
// batch 512 (multi 106-407, cuBLAS 144-299 but for one 62 us outlier); at width 256 multi
// took 108-145 us up to batch 512, cuBLAS 75-228 us from batch 1024 (single 218-375); at
// widths 512 and 1024 cuBLAS won at every batch (B = 32, width 1024: 78-152 us against
// multi's 352-354).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <tuple>

#include "dni/checks.h"
#include "host.h"
#include "params.h"

namespace dni::cuda {
namespace {

Path choose_path(int64_t batch, int64_t in, int64_t out, bool chained) {
  const std::string mode = cuda_path_setting();
  if (batch == 0 || mode == "multi") return Path::kMulti;
  if (mode == "cublas") return Path::kCublas;
  if (mode == "single") {
    TORCH_CHECK(in <= kSingleMaxFeatures && out <= kSingleMaxFeatures,
                "dni: DNI_CUDA_PATH=single needs in_features and out_features <= ",
                kSingleMaxFeatures, ", got ", in, " and ", out,
                " (unset it, or set auto or multi)");
    return Path::kSingle;
  }
  const int64_t width = std::max(in, out), work = largest_product_work(batch, in, out, chained);
  if (prefers_single(batch, width, work)) return Path::kSingle;
  return prefers_cublas(width, work) ? Path::kCublas : Path::kMulti;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> linear_step_cuda(
    const Tensor& x, Tensor& weight, const OptTensor& bias, const OptTensor& weight_grad,
    const OptTensor& bias_grad, const Tensor& sg_weight, const OptTensor& sg_bias,
    const OptTensor& sg_table, const OptTensor& labels, c10::string_view activation,
    double sg_scale, double lr, const OptTensor& prev_h, const OptTensor& prev_sg_raw,
    const OptTensor& prev_labels, const OptTensor& prev_sg_weight,
    const OptTensor& prev_sg_bias, const OptTensor& prev_sg_table,
    const OptTensor& prev_sg_weight_grad, const OptTensor& prev_sg_bias_grad,
    const OptTensor& prev_sg_table_grad, double prev_lr, bool compute_grad_x) {
  // ---- validate everything before anything is written; label values are checked on
  // the device (reading them here would synchronise), see device_utils.cuh ----
  const DtypePolicy policy{/*allow_half_activations=*/true};
  const Activation act = parse_activation(std::string(activation));
  check_linear_step(x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias, sg_table,
                    labels, sg_scale, lr, policy, /*check_label_values=*/false);
  const std::optional<SgGroup> prev = check_prev_group(
      x, weight, bias, weight_grad, bias_grad, prev_h, prev_sg_raw, prev_labels,
      prev_sg_weight, prev_sg_bias, prev_sg_table, prev_sg_weight_grad, prev_sg_bias_grad,
      prev_sg_table_grad, prev_lr, compute_grad_x, policy, /*check_label_values=*/false);
  TORCH_CHECK(x.is_cuda(), "dni: linear_step CUDA kernel got x on ", x.device());
  check_cuda_dtype(x, "linear_step");
  const int64_t batch = x.size(0), in = x.size(1), out = weight.size(0);
  const Path path = choose_path(batch, in, out, prev.has_value());

  const c10::cuda::CUDAGuard guard(x.device());
  const auto opts = x.options();
  Tensor h = at::empty({batch, out}, opts);
  Tensor sg_raw = at::empty({batch, out}, opts);
  // Without compute_grad_x (a first layer) an empty tensor stands in for grad_x.
  Tensor grad_x = compute_grad_x ? at::empty({batch, in}, opts) : at::empty({0}, opts);
  const bool chained = prev.has_value();
  Tensor prev_loss = chained ? at::empty({}, opts) : at::zeros({}, opts);

  const bool grads_mode = weight_grad.has_value();
  LinearStepParams p;
  p.batch = batch;
  p.in = in;
  p.out = out;
  p.act = act;
  p.x = strided(x);
  p.weight = weight.data_ptr();
  p.weight_dst = grads_mode ? weight_grad->data_ptr() : weight.data_ptr();
  p.bias = data_or_null(bias);
  p.bias_dst = data_or_null(grads_mode ? bias_grad : bias);
  p.sg_weight = sg_weight.data_ptr();
  p.sg_bias = data_or_null(sg_bias);
  p.sg_table = data_or_null(sg_table);
  p.labels = labels_of(labels, sg_table);
  p.sg_scale = static_cast<float>(sg_scale);
  p.step = grads_mode ? -1.f : static_cast<float>(lr);
  p.h = h.data_ptr();
  p.sg_raw = sg_raw.data_ptr();
  p.grad_x = grad_x.data_ptr();
  p.compute_grad_x = compute_grad_x;
  p.chained = chained;
  if (chained) {
    p.prev = sg_regression_params(*prev, prev_lr);
    p.prev.loss = prev_loss.data_ptr();
  }
  const int64_t classes = p.prev.labels.num_classes;
  auto workspace = allocate_workspace(x, [&](Carver& scratch, Carver& sums) {
    if (path != Path::kSingle) {
      p.g = scratch.take(batch * out);
      if (chained) p.prev.e = scratch.take(batch * in);
    }
    if (path == Path::kCublas) {
      // One product's result at a time: z, ĝ_raw [B, O], grad_x [B, I], gᵀx [O, I] and
      // the chained regression's eᵀh_prev [I, I].
      p.product_scratch = scratch.take(
          std::max({batch * out, batch * in, out * in, chained ? in * in : int64_t{0}}));
      p.prev.product_scratch = p.product_scratch;
    } else if (path == Path::kSingle) {
      p.weight_sum = sums.take(out * in);
      p.counter = reinterpret_cast<unsigned int*>(sums.take(1));
      if (chained) p.prev.weight_sum = sums.take(in * in);
    }
    p.bias_sum = sums.take(out);
    if (chained) {
      p.prev.loss_sum = sums.take(1);
      p.prev.bias_sum = sums.take(in);
      p.prev.table_sum = sums.take(classes * in);
    }
  });

  const bool fp32_params = params_fp32(x, weight);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  with_activation_type(x.scalar_type(), [&](auto type) {
    launch_linear_step<decltype(type)>(p, path, fp32_params, stream);
  });
  return {h, sg_raw, grad_x, prev_loss};
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CUDA, m) { m.impl("linear_step", &linear_step_cuda); }

}  // namespace dni::cuda
