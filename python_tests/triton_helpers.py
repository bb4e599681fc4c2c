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
PATHS = ["single", "multi", "cublas"]  # cublas: torch.mm (cuBLAS on a GPU) for the products

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


# --- ahead-of-time compilation for a GPU, without one --------------------------------
# The interpreter runs the kernels' Python, not Triton's compiler: a kernel can pass
# every interpreted test and still fail to compile. So the tests also compile each
# kernel for sm_90 (Triton bundles ptxas), in a subprocess without TRITON_INTERPRET.

_POINTER_DTYPES = {"y_ptr": "i64", "py_ptr": "i64", "counter_ptr": "i32", "ws_ptr": "fp32", "pws_ptr": "fp32",
                   "dc_ptr": "fp32", "rec_ptr": "fp32", "p_ptr": "fp32"}
_PARAMS = {"w_ptr", "b_ptr", "A_ptr", "a_ptr", "C_ptr", "w_dst", "b_dst", "pA_dst", "pa_dst", "pC_dst"}
_INTS = {"B", "I", "O", "K", "PK", "F", "H"}
_FLOATS = {"sg_scale", "step", "prev_step"}


def _signature(fn, act: str, param: str, blocks: dict):
    """Argument types from the kernels' naming convention (strides s_*, sizes,
    pointers *_ptr / *_dst); every constexpr flag on unless `blocks` sets it, tanh, the
    given blocks."""
    import triton.language as tl

    sig, consts = {}, {}
    for p in fn.params:
        n = p.name
        if p.is_constexpr:
            sig[n] = "constexpr"
            consts[n] = {"ACT": 2, "DOT_DTYPE": getattr(tl, {"fp32": "float32", "fp16": "float16",
                                                             "bf16": "bfloat16"}[act])}.get(n, blocks.get(n, True))  # fmt: skip
        elif n in _INTS or n.startswith("s_"):
            sig[n] = "i32"
        elif n in _FLOATS:
            sig[n] = "fp32"
        elif n.endswith(("_ptr", "_dst")):
            sig[n] = "*" + _POINTER_DTYPES.get(n, param if n in _PARAMS else act)
        else:
            raise AssertionError(f"{fn.__name__}: unknown argument kind for {n!r}")
    return sig, consts


def _compile_main(module: str, spec: str) -> None:
    import importlib
    import json

    import triton
    from triton.backends.compiler import GPUTarget

    mod = importlib.import_module(module)
    s = json.loads(spec)
    for name, blocks in s["kernels"].items():
        fn = getattr(mod, name)
        sig, consts = _signature(fn, s["act"], s["param"], blocks)
        src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts)
        triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})


def compile_for_sm90(module: str, kernels: dict, act: str, param: str) -> None:
    """Compile `kernels` ({name: {BLOCK_*: size}}) of `module` for sm_90 with
    activations `act` and parameters `param` ("fp32" | "fp16" | "bf16")."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    spec = json.dumps({"kernels": kernels, "act": act, "param": param})
    code = f"import triton_helpers as t; t._compile_main({module!r}, {spec!r})"
    here = os.path.dirname(os.path.abspath(__file__))
    res = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
