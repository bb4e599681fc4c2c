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

// A [rows, cols] view of device memory (no copy). The device is given, not looked up:
// from_blob would otherwise ask the driver where `data` lives (cudaPointerGetAttributes)
// for every operand of every product.
at::Tensor on_current_device(void* data, int64_t rows, int64_t cols, int64_t row_stride,
                             int64_t col_stride, at::ScalarType dtype) {
  const at::Device device(at::kCUDA, c10::cuda::current_device());
  return at::for_blob(data, {rows, cols})
      .strides({row_stride, col_stride})
      .options(at::TensorOptions().dtype(dtype).device(device))
      .target_device(device)
      .make_tensor();
}

at::Tensor as_tensor(const Matrix& m, int64_t rows, int64_t cols) {
  return on_current_device(const_cast<void*>(m.data), rows, cols, m.s_r, m.s_c,
                           scalar_type(m.type));
}

}  // namespace

void cublas_product(const Matrix& a, const Matrix& b, int64_t m, int64_t n, int64_t k,
                    float* out) {
  at::Tensor c = on_current_device(out, m, n, n, 1, at::kFloat);
  if (k == 0) {
    // An empty sum: zeros, without viewing the (possibly null) empty operands.
    c.zero_();
    return;
  }
  // mm_out copies an operand with no unit stride before cuBLAS sees it.
  float_product_out(c, as_tensor(a, m, k), as_tensor(b, k, n));
}

}  // namespace dni::cuda
