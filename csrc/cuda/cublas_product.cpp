// params.h::cublas_product: the cuBLAS path's products (DNI_CUDA_PATH=cublas, or auto
// for large layers), through ATen's matmul so that the handle, the current stream, the
// workspace and the TF32 setting (torch.backends.cuda.matmul.allow_tf32, off by
// default) are PyTorch's own. Compiled by the host compiler; the .cu launchers call it
// between their kernels, on the same stream.
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAFunctions.h>

#include "host.h"
#include "params.h"

namespace dni::cuda {
namespace {

at::ScalarType scalar_type(ElementType t) {
  switch (t) {
    case ElementType::kFloat16:
      return at::kHalf;
    case ElementType::kBFloat16:
      return at::kBFloat16;
    default:
      return at::kFloat;
  }
}

// `m` as a [rows, cols] tensor of its own dtype on the current device (no copy).
at::Tensor as_tensor(const Matrix& m, int64_t rows, int64_t cols) {
  const auto options = at::TensorOptions()
                           .dtype(scalar_type(m.type))
                           .device(at::kCUDA, c10::cuda::current_device());
  return at::from_blob(const_cast<void*>(m.data), {rows, cols}, {m.s_r, m.s_c}, options);
}

}  // namespace

void cublas_product(const Matrix& a, const Matrix& b, int64_t m, int64_t n, int64_t k,
                    float* out) {
  const auto options =
      at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, c10::cuda::current_device());
  at::Tensor c = at::from_blob(out, {m, n}, options);
  if (k == 0) {
    // An empty operand's pointer may be null, which from_blob cannot place on a device.
    c.zero_();
    return;
  }
  // mm_out copies an operand with no unit stride before cuBLAS sees it.
  float_product_out(c, as_tensor(a, m, k), as_tensor(b, k, n));
}

}  // namespace dni::cuda
