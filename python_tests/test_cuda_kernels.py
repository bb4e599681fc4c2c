"""The CUDA C++ kernels of linear_step and sg_update (csrc/cuda/) vs reference.py.

* Build check, no GPU needed: a CUDA build registers both ops' CUDA kernels and
  carries the device code of every linear_step path. With DNI_REQUIRE_CUDA_BUILD=1 (CI sets
  it) a build without the CUDA kernels FAILS here instead of skipping.
* GPU tests (skipped without a GPU): the three linear_step paths, forced per test with
  DNI_CUDA_PATH=single|multi|cublas (read by the op on every call), and sg_update on
  its two (the tiled GEMM and cuBLAS), against
  the reference on cuda tensors: outputs and every updated tensor, float32 with the
  tolerance table, float16/bfloat16 with the "2x PyTorch's own error" rule, float32
  master weights under half activations, odd shapes, batch 1, strided inputs,
  opcheck, torch.compile(fullgraph=True), refused input leaving weights untouched.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch

from dni_kernels import ops, reference
from samples import (LINEAR_STEP_OUTPUTS, assert_unchanged, check_without_grad_x,
                     make_linear_step_case, make_sg_update_case, mutable_snapshot)  # fmt: skip
from cuda_build import assert_cuda_kernels_built
from tolerances import assert_low_precision_close
from triton_helpers import cast_case, check

OPS = ("linear_step", "sg_update")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


def test_cuda_kernels_registered():
    # Every linear_step path's device code is linked in (the cuBLAS path's own part is
    # the elementwise epilogue kernel).
    assert_cuda_kernels_built(OPS, (b"linear_step_single_kernel", b"gemm_kernel", b"epilogue_kernel",
                                    b"column_sum_kernel"))  # fmt: skip


# --- GPU tests ------------------------------------------------------------------------

PATHS = ["single", "multi", "cublas"]
LOW_PRECISION = [torch.float16, torch.bfloat16]
# (batch, in, out): batch 1, sizes off multiples of 16 and of the GEMM tile, the single
# path's feature limit (256; any batch is allowed when the path is forced).
SHAPES = [(1, 5, 3), (7, 33, 17), (19, 129, 65), (600, 40, 24), (70, 256, 200)]
LARGE = (9, 300, 270)  # multi only: the single kernel takes at most 256 features


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    monkeypatch.setenv("DNI_CUDA_PATH", request.param)
    return request.param


@pytest.fixture(params=["multi", "cublas"])
def sg_update_path(request, monkeypatch):
    """sg_update's two forms of its product (single means the tiled GEMM there too)."""
    monkeypatch.setenv("DNI_CUDA_PATH", request.param)
    return request.param


def _linear_step_cases():
    axes = itertools.product([torch.float32, *LOW_PRECISION], SHAPES, reference.ACTIVATIONS,
                             ["sgd", "grads"], [None, 10])  # fmt: skip
    for i, (dtype, shape, act, mode, k) in enumerate(axes):
        yield pytest.param(
            dict(shape=shape, dtype=dtype, activation=act, mode=mode, num_classes=k,
                 bias=i % 2 == 0, sg_bias=i % 3 != 0, noncontig=i % 4 == 1, chain=i % 5 < 3,
                 chain_classes=[None, 3][i % 2]),
            id=f"{str(dtype)[6:]}-{shape}-{act}-{mode}-K{k}-{i}",
        )  # fmt: skip


def _run_linear_step(cfg):
    cfg = dict(cfg)
    case = make_linear_step_case(*cfg.pop("shape"), device="cuda", **cfg)
    return check(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)


@GPU
@pytest.mark.parametrize("cfg", list(_linear_step_cases()))
def test_linear_step_matches_reference(cfg, path):
    _run_linear_step(cfg)


@GPU
@pytest.mark.parametrize("dtype", [torch.float32, *LOW_PRECISION])
@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_linear_step_large_layer_multi_path(dtype, mode, monkeypatch):
    monkeypatch.setenv("DNI_CUDA_PATH", "auto")  # too large for single: auto picks multi
    _run_linear_step(dict(shape=LARGE, dtype=dtype, mode=mode, activation="tanh", num_classes=7,
                          noncontig=True, chain=True, chain_classes=5))  # fmt: skip


def _with_master_weights(case, names):
    """Half activations, float32 copies of the parameters (and their .grad buffers)."""
    for name in names:
        obj, attr = (case.prev, name[5:]) if name.startswith("prev_") else (case, name)
        if getattr(obj, attr) is not None:
            setattr(obj, attr, getattr(obj, attr).float())
    return case


@GPU
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_linear_step_master_weights(dtype, mode, path):
    """float32 parameters under half activations: outputs stay in the activation dtype
    and no result is worse than the reference run entirely in that dtype."""
    base = make_linear_step_case(13, 40, 29, dtype=dtype, device="cuda", mode=mode, num_classes=6,
                                 chain=True, chain_classes=4, activation="sigmoid")  # fmt: skip
    params = ["weight", "bias", "weight_grad", "bias_grad", "sg_weight", "sg_bias", "sg_table",
              *("prev_" + n for n in base.prev.params())]  # fmt: skip
    mixed = _with_master_weights(base.clone(), params)
    lowp, f64 = base.clone(), cast_case(base, torch.float64)
    actual, expected_lowp, expected_f64 = mixed.call(ops.linear_step), lowp.call(reference.linear_step), f64.call(reference.linear_step)  # fmt: skip
    for name, a, e, e64 in zip(LINEAR_STEP_OUTPUTS, actual, expected_lowp, expected_f64):
        assert a.dtype == dtype, name
        assert_low_precision_close(a, e, e64, name)
    for (name, a), e, e64 in zip(mixed.mutable().items(), lowp.mutable().values(), f64.mutable().values()):
        if a is not None:
            assert a.dtype == torch.float32, name
            assert_low_precision_close(a, e, e64, name)


def _sg_update_cases():
    axes = itertools.product([torch.float32, *LOW_PRECISION], [(1, 3), (7, 17), (33, 130), (300, 64)],
                             ["sgd", "grads"], [None, 1, 10])  # fmt: skip
    for i, (dtype, shape, mode, k) in enumerate(axes):
        yield pytest.param(
            dict(shape=shape, dtype=dtype, mode=mode, num_classes=k, sg_bias=i % 3 != 0, noncontig=i % 2 == 1),
            id=f"{str(dtype)[6:]}-{shape}-{mode}-K{k}-{i}",
        )  # fmt: skip


@GPU
@pytest.mark.parametrize("cfg", list(_sg_update_cases()))
def test_sg_update_matches_reference(cfg, sg_update_path):
    cfg = dict(cfg)
    case = make_sg_update_case(*cfg.pop("shape"), device="cuda", **cfg)
    check(case, ops.sg_update, reference.sg_update, ("loss",))


@GPU
def test_duplicate_labels_accumulate(path):
    """Rows sharing a label all update that class row: the table sums are atomics."""
    case = make_linear_step_case(40, 24, 16, device="cuda", num_classes=3, chain=True, chain_classes=2)
    case.prev.labels.fill_(1)
    check(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)
    sg_case = make_sg_update_case(40, 24, device="cuda", num_classes=2)
    sg_case.state.labels.fill_(0)
    check(sg_case, ops.sg_update, reference.sg_update, ("loss",))


@GPU
def test_empty_batch_changes_nothing(path):
    case = make_linear_step_case(0, 9, 7, device="cuda", num_classes=3, chain=True, chain_classes=3)
    before = mutable_snapshot(case)
    h, sg_raw, grad_x, loss = case.call(ops.linear_step)
    assert h.shape == (0, 7) and grad_x.shape == (0, 9) and loss.item() == 0
    assert_unchanged(case, before, "changed with an empty batch")


@GPU
@pytest.mark.parametrize("shape", [(7, 33, 17), (70, 256, 200), LARGE])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_without_grad_x(num_classes, shape, path):
    """compute_grad_x=False (a first layer): the same step, grad_x an empty tensor (the
    single kernel computes no grad_x columns; the multi path skips the grad_x GEMM)."""
    if path == "single" and shape == LARGE:
        pytest.skip("the single kernel takes at most 256 features")
    case = make_linear_step_case(*shape, device="cuda", num_classes=num_classes,
                                 mode="grads" if num_classes else "sgd",
                                 noncontig=num_classes is None)  # fmt: skip
    check_without_grad_x(case, ops.linear_step)


@GPU
def test_runs_on_the_current_stream(path):
    case = make_linear_step_case(8, 20, 12, device="cuda", chain=True, num_classes=4, chain_classes=4)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        check(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)
    stream.synchronize()


@GPU
@pytest.mark.parametrize(
    "cfg",
    [dict(mode="sgd", num_classes=10, chain=True, chain_classes=3, noncontig=True),
     dict(mode="grads", num_classes=None, bias=False, chain=True, activation="sigmoid", dtype=torch.float16),
     dict(mode="sgd", num_classes=1, sg_bias=False, activation="identity", dtype=torch.bfloat16)],
)  # fmt: skip
def test_linear_step_opcheck(cfg, path):
    case = make_linear_step_case(5, 9, 7, device="cuda", **cfg)
    torch.library.opcheck(torch.ops.dni.linear_step.default, case.op_args())
    if case.prev is None:
        case.compute_grad_x = False
        torch.library.opcheck(torch.ops.dni.linear_step.default, case.op_args())


@GPU
@pytest.mark.parametrize("cfg", [dict(num_classes=10, mode="sgd", noncontig=True),
                                 dict(num_classes=None, mode="grads", dtype=torch.bfloat16)])  # fmt: skip
def test_sg_update_opcheck(cfg):
    case = make_sg_update_case(5, 7, device="cuda", **cfg)
    torch.library.opcheck(torch.ops.dni.sg_update.default, case.op_args())


@GPU
def test_torch_compile_fullgraph(path):
    case = make_linear_step_case(6, 10, 8, device="cuda", num_classes=4, chain=True, chain_classes=4)
    check(case, torch.compile(ops.linear_step, fullgraph=True), reference.linear_step, LINEAR_STEP_OUTPUTS)
    sg_case = make_sg_update_case(6, 8, device="cuda", num_classes=3)
    check(sg_case, torch.compile(ops.sg_update, fullgraph=True), reference.sg_update, ("loss",))


def _our_kernels_launched(fn):
    """Which of our kernels `fn` launched (the profiler's demangled names; cuBLAS's own
    kernels have other names)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ours = ("linear_step_single_kernel", "gemm_kernel", "epilogue_kernel")
    return {k for e in prof.events() for k in ours if f"dni::cuda::{k}" in e.name}


@GPU
@pytest.mark.parametrize("shape,kernel", [((32, 1024, 1024), "epilogue_kernel"),  # 512+ features: cuBLAS
                                          ((32, 64, 1024), "epilogue_kernel"),  # a wide output
                                          ((32, 1024, 64), "epilogue_kernel"),  # a wide input
                                          ((256, 256, 256), "gemm_kernel"),  # 2^24: multi
                                          ((512, 256, 256), "gemm_kernel"),  # 2^25: multi
                                          ((1024, 256, 200), "epilogue_kernel"),  # 2^26: cuBLAS
                                          ((4096, 64, 64), "linear_step_single_kernel"),
                                          ((32, 40, 64), "linear_step_single_kernel"),
                                          ((2048, 128, 100), "linear_step_single_kernel"),  # not cuBLAS
                                          ((8192, 128, 100), "epilogue_kernel"),  # 2^27 (chained B·I²): past single
                                          ((511, 128, 128), "gemm_kernel"),
                                          ((512, 128, 128), "linear_step_single_kernel")])  # fmt: skip
def test_auto_path_rule(shape, kernel, monkeypatch):
    """DNI_CUDA_PATH=auto (params.h): the single kernel for narrow layers (at most 64
    features, or 128 from batch 512) up to 2^26 multiply-adds in the largest product,
    else cuBLAS from 512 features or 2^26 multiply-adds, multi otherwise;
    each path's result still matches the reference at these sizes."""
    monkeypatch.setenv("DNI_CUDA_PATH", "auto")
    case = make_linear_step_case(*shape, device="cuda", num_classes=10, chain=True, chain_classes=3)
    launched = _our_kernels_launched(
        lambda: check(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS))
    assert launched == {kernel}, launched
    for feat, kernel in ((1024, "epilogue_kernel"), (130, "gemm_kernel")):
        sg_case = make_sg_update_case(32, feat, device="cuda", num_classes=3)
        launched = _our_kernels_launched(
            lambda: check(sg_case, ops.sg_update, reference.sg_update, ("loss",)))
        assert launched == {kernel}, (feat, launched)


# --- refused input: a clear error naming the argument, nothing written ---------------


def _bad_inputs():
    def set_(field, value):
        return lambda c: setattr(c, field, value(c))

    yield "x", set_("x", lambda c: c.x[:, :-1])
    yield "float64", lambda c: cast_case(c, torch.float64)  # allowed on CPU only
    yield "weight", set_("weight", lambda c: c.weight.t().contiguous().t())
    yield "weight", set_("weight", lambda c: c.weight.cpu())
    yield "sg_table", set_("sg_table", lambda c: c.sg_table[:, :-1])
    yield "labels", set_("labels", lambda c: c.labels.int())
    yield "lr", set_("lr", lambda c: float("nan"))
    yield "bias_grad", set_("bias_grad", lambda c: None)
    yield "prev_h", lambda c: setattr(c.prev, "h", c.prev.h[:-1])
    yield "prev_h", lambda c: setattr(c.prev, "h", c.prev.h.half())  # read as x's dtype
    yield "compute_grad_x", set_("compute_grad_x", lambda c: False)  # with the chain
    yield "x shares memory with weight", set_("x", lambda c: c.weight[:6])


@GPU
@pytest.mark.parametrize("arg,corrupt", list(_bad_inputs()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_argument_and_writes_nothing(arg, corrupt, path):
    mode = "grads" if arg == "bias_grad" else "sgd"
    case = make_linear_step_case(6, 9, 7, device="cuda", num_classes=10, chain=True, chain_classes=3, mode=mode)
    case = corrupt(case) or case
    before = mutable_snapshot(case)
    with pytest.raises((RuntimeError, ValueError), match=arg):
        case.call(ops.linear_step, backend="cuda")
    assert_unchanged(case, before, "was modified by a refused call")


@GPU
def test_bad_cuda_path_setting(monkeypatch):
    case = make_linear_step_case(4, 300, 8, device="cuda")
    monkeypatch.setenv("DNI_CUDA_PATH", "single")
    with pytest.raises(RuntimeError, match="DNI_CUDA_PATH=single"):
        case.call(ops.linear_step)
    monkeypatch.setenv("DNI_CUDA_PATH", "fast")
    with pytest.raises(RuntimeError, match="DNI_CUDA_PATH"):
        case.call(ops.linear_step)


_OUT_OF_RANGE_LABEL = """
import torch, sys
sys.path.insert(0, {here!r})
from dni_kernels import ops
from samples import make_linear_step_case
case = make_linear_step_case(6, 9, 7, device="cuda", num_classes=4, chain=True, chain_classes=3)
{corrupt}
case.call(ops.linear_step)
torch.cuda.synchronize()
"""


@GPU
@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("prev", [False, True])
def test_out_of_range_label_traps_on_device(path_name, prev):
    """Labels are range-checked on the device (reading them on the host would sync):
    a bad one is a device-side assert, which poisons the CUDA context, so it runs in
    a subprocess."""
    corrupt = "case.prev.labels.fill_(3)" if prev else "case.labels.fill_(-1)"
    code = _OUT_OF_RANGE_LABEL.format(here=os.path.dirname(os.path.abspath(__file__)), corrupt=corrupt)
    env = dict(os.environ, DNI_CUDA_PATH=path_name)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "assert" in res.stderr.lower(), res.stderr[-2000:]
