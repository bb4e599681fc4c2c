// The CUDA kernels for float activations (see launch.cuh).
#include "launch.cuh"

DNI_INSTANTIATE_CUDA_LAUNCHERS(float)
