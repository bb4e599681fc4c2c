"""Devices, dtypes and low-precision comparison shared by the test_*_triton files.

On a machine without a GPU the Triton kernels run in the interpreter on CPU tensors
(conftest.py sets TRITON_INTERPRET=1); with a GPU they run compiled on CUDA tensors
and the CPU cases skip (the interpreter is fixed when Triton decorates the kernels).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from torch import Tensor

from samples import check_against_reference
from tolerances import assert_low_precision_close

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
PATHS = ["single", "multi"]

CPU = pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1"))
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))
DEVICES = [CPU, CUDA]


def skip_unsupported(device: str, dtype: torch.dtype) -> None:
    if device == "cpu" and dtype == torch.bfloat16:
        pytest.skip("bfloat16 does not work in the Triton interpreter; covered on GPU")


def cast_case(case, dtype):
    """A copy of a sample case (LinearStepCase, SgUpdateCase) with its floating
    tensors in `dtype`; labels are kept."""

    def c(v):
        if isinstance(v, Tensor):
            return v.to(dtype) if v.is_floating_point() else v.clone()
        if dataclasses.is_dataclass(v):
            return type(v)(**{f.name: c(getattr(v, f.name)) for f in dataclasses.fields(v)})
        return v

    return c(case)


def check(case, fn, reference_fn, output_names, **extra):
    """Outputs and every updated tensor vs the reference: the tolerance table for
    float32; for half precision, the error vs a float64 reference at most 2x that of
    the reference run by PyTorch in the same precision."""
    dtype = case.x.dtype if hasattr(case, "x") else case.target.dtype
    if dtype == torch.float32:
        return check_against_reference(case, fn, reference_fn, output_names, **extra)
    lowp, f64, actual_case = case.clone(), cast_case(case, torch.float64), case.clone()
    expected_lowp, expected_f64 = lowp.call(reference_fn), f64.call(reference_fn)
    actual = actual_case.call(fn, **extra)
    if isinstance(actual, Tensor):
        actual, expected_lowp, expected_f64 = (actual,), (expected_lowp,), (expected_f64,)
    for name, a, e, e64 in zip(output_names, actual, expected_lowp, expected_f64):
        assert a.dtype == dtype, f"{name}: dtype {a.dtype}"
        assert_low_precision_close(a, e, e64, name)
    for (name, a), e, e64 in zip(actual_case.mutable().items(), lowp.mutable().values(),
                                 f64.mutable().values()):  # fmt: skip
        if a is not None:
            assert_low_precision_close(a, e, e64, name)
    return actual
