// The launchers declared in params.h, instantiated per activation dtype by the
// kernels_<dtype>.cu files (one per dtype, so nvcc builds them in parallel). Each
// dtype T comes with parameters of dtype T or float32 ("master weights"); the
// activation is a template parameter of every kernel.
#pragma once

#include "dni/static_switch.h"
#include "linear_step_multi.cuh"
#include "linear_step_single.cuh"
#include "sg_regression.cuh"

namespace dni::cuda {

template <typename T>
void launch_linear_step(const LinearStepParams& p, Path path, bool params_fp32,
                        cudaStream_t stream) {
  auto run = [&](auto param_type) {
    using P = decltype(param_type);
    DNI_ACTIVATION_SWITCH(p.act, kAct, [&] {
      if (path == Path::kSingle) {
        run_single<T, P, kAct>(p, stream);
      } else {
        run_multi<T, P, kAct>(p, stream);
      }
    });
  };
  if (params_fp32) {
    run(float{});
  } else {
    run(T{});
  }
}

}  // namespace dni::cuda

// At global scope: explicit instantiations of the launchers for activation dtype T.
#define DNI_INSTANTIATE_CUDA_LAUNCHERS(T)                                               \
  template void dni::cuda::launch_linear_step<T>(const dni::cuda::LinearStepParams&,    \
                                                 dni::cuda::Path, bool, cudaStream_t);  \
  template void dni::cuda::launch_sg_update<T>(const dni::cuda::SgRegressionParams&,    \
                                               bool, cudaStream_t);
