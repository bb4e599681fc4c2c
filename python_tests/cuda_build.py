"""The build check shared by the CUDA test files (runs without a GPU)."""

import os

import pytest

import dni_kernels


def assert_cuda_kernels_built(ops, kernel_names):
    """`ops` have CUDA kernels registered and `kernel_names` (device functions) are in
    the library. Without a CUDA build this skips, unless DNI_REQUIRE_CUDA_BUILD=1 (CI
    sets it), where it fails."""
    if not dni_kernels.built_with_cuda():
        assert os.environ.get("DNI_REQUIRE_CUDA_BUILD") != "1", (
            "DNI_REQUIRE_CUDA_BUILD=1 but dni_kernels._C has no CUDA kernels "
            f"(load error: {dni_kernels.LOAD_ERROR}); build with DNI_BUILD_CUDA=1")
        pytest.skip("dni_kernels was built without its CUDA kernels")
    for op in ops:
        assert dni_kernels.has_kernel(op, "CUDA"), f"dni::{op} has no CUDA kernel"
    with open(dni_kernels._C.__file__, "rb") as f:
        binary = f.read()
    for kernel in kernel_names:  # names survive in the fatbin
        assert kernel in binary, f"{kernel.decode()} missing from {dni_kernels._C.__file__}"
