#!/usr/bin/env bash
# Incremental in-place rebuild of dni_kernels/_C*.so for development (ninja reuses
# ./build). Serialised with a lock: concurrent builds of one tree clobber each other.
#   DNI_BUILD_CUDA=0 (default here) builds the CPU kernels only, in about a minute;
#   DNI_BUILD_CUDA=1 also compiles csrc/cuda/*.cu for TORCH_CUDA_ARCH_LIST.
set -euo pipefail
cd "$(dirname "$0")/.."
export DNI_BUILD_CUDA=${DNI_BUILD_CUDA:-0}
flock .build.lock .venv/bin/python setup.py -q build_ext --inplace
