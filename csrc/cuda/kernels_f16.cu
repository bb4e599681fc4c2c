// The CUDA kernels for c10::Half activations (see launch.cuh).
#include "launch.cuh"

DNI_INSTANTIATE_CUDA_LAUNCHERS(c10::Half)
