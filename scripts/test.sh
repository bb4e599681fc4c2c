#!/usr/bin/env bash
# Sets up (scripts/setup_env.sh), builds the C++ library with CMake too, and runs the
# whole test suite. This is what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"  # the venv's ninja and cmake helpers, if the system has none
# The CMake build of the same csrc/ (CPU), for C++ users; it must keep building.
prefix=$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-cmake -G Ninja -DCMAKE_PREFIX_PATH="$prefix" > build-cmake.log 2>&1 \
  || { cat build-cmake.log; exit 1; }
cmake --build build-cmake -j "${MAX_JOBS:-2}" >> build-cmake.log 2>&1 || { tail -50 build-cmake.log; exit 1; }
echo "cmake build: ok (build-cmake/libdni_kernels.so)"
DNI_CMAKE_LIB="$PWD/build-cmake/libdni_kernels.so" .venv/bin/python -m pytest python_tests -q "$@"
