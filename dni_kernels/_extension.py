"""Loads the compiled library (dni_kernels._C) and says clearly when it cannot.

Importing dni_kernels never fails because of the build: the reference path and the
modules' reference mode work without it. A fused op asks `require_kernels(device)`,
which raises an actionable error if the library, or its CUDA part, is missing.
"""

from __future__ import annotations

import torch

_BUILD_HINT = "pip install --no-build-isolation -e .  (from the repository root)"

try:
    from . import _C  # noqa: F401  (registers torch.ops.dni.*)

    LOAD_ERROR: Exception | None = None
except ImportError as exc:  # missing build, or built against another torch
    LOAD_ERROR = exc


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether torch.ops.dni.<op> has a kernel registered for CPU / CUDA."""
    if LOAD_ERROR is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"dni::{op}", dispatch_key)


# Read once: the registrations are fixed once _C is loaded, and a plain bool keeps
# the check traceable by torch.compile (the dispatcher query returns a non-tensor
# that dynamo refuses to trace).
_CUDA_KERNELS = has_kernel("linear_step", "CUDA")


def built_with_cuda() -> bool:
    return _CUDA_KERNELS


def require_kernels(device: torch.device) -> None:
    if LOAD_ERROR is not None:
        raise RuntimeError(
            "dni_kernels: the compiled extension dni_kernels._C could not be loaded "
            f"({LOAD_ERROR}). Build it with: {_BUILD_HINT}. The pure-PyTorch "
            "reference (dni_kernels.reference) works without it."
        ) from LOAD_ERROR
    if device.type == "cuda" and not built_with_cuda():
        raise RuntimeError(
            "dni_kernels was built without its CUDA kernels, but a CUDA tensor was "
            "given. Rebuild with a CUDA toolkit and a CUDA build of torch: "
            f"CUDA_HOME=/usr/local/cuda DNI_BUILD_CUDA=1 {_BUILD_HINT}. "
            "Or pass backend='triton' to use the Triton kernels."
        )
