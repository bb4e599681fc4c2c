"""Every op under torch.autocast computes what it computes without it, in the dtypes it
is given, on every backend and kernel path.

csrc/ops.cpp gives each op an autocast kernel that turns autocast off below it:
autocast must not cast the weights an op updates in place, nor round the products
inside the kernels (oneDNN/BLAS on CPU, cuBLAS, the Triton launchers' torch.mm) to
bfloat16 or float16. Before it, the CPU kernels raised under CPU autocast ("expected
scalar type Float but found BFloat16") and the Triton cuBLAS paths silently computed
their products in half precision.
"""

from __future__ import annotations

import pytest
import torch

from dni_kernels import ops
from samples import LINEAR_STEP_OUTPUTS, make_linear_step_case, make_sg_update_case
from test_lstm import _dni_inputs
from tolerances import assert_close
from triton_helpers import INTERPRETED

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
INTERPRETER = pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")

# (device, backend, the environment variable choosing the kernel path, its values):
# every path whose products could go through an autocast-affected ATen call.
TRAINING_STEP_BACKENDS = [
    pytest.param("cpu", "auto", None, [None], id="cpu"),
    pytest.param("cpu", "triton", "DNI_TRITON_PATH", ["multi", "cublas"], id="triton-interpreted",
                 marks=INTERPRETER),
    pytest.param("cuda", "auto", "DNI_CUDA_PATH", ["single", "multi", "cublas"], id="cuda", marks=GPU),
    pytest.param("cuda", "triton", "DNI_TRITON_PATH", ["single", "multi", "cublas"], id="triton",
                 marks=GPU),
]  # fmt: skip
LSTM_BACKENDS = [
    pytest.param("cpu", "auto", None, [None], id="cpu"),
    pytest.param("cpu", "triton", "DNI_TRITON_LSTM_STEP", ["fused", "cublas"], id="triton-interpreted",
                 marks=INTERPRETER),
    pytest.param("cuda", "auto", "DNI_CUDA_LSTM_STEP", ["fused", "cublas"], id="cuda", marks=GPU),
    pytest.param("cuda", "triton", "DNI_TRITON_LSTM_STEP", ["fused", "cublas"], id="triton", marks=GPU),
]  # fmt: skip


def autocast(device: str):
    """The autocast a user would write: bfloat16 on CPU, float16 on a GPU."""
    return torch.autocast(device, dtype=torch.bfloat16 if device == "cpu" else torch.float16)


def assert_same(actual, expected, name: str) -> None:
    """Bit-identical on CPU (the CPU kernels and the interpreter are deterministic);
    within the float32 tolerance on a GPU, where atomics may reorder sums."""
    if actual.device.type == "cpu":
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), name
    else:
        assert_close(actual, expected, name)


def with_and_without_autocast(run, monkeypatch, env, paths):
    """run(autocast_on) -> {name: tensor}, on every path; compares the two runs."""
    for path in paths:
        if env is not None:
            monkeypatch.setenv(env, path)
        plain = run(False)
        cast = run(True)
        for name in plain:
            assert_same(cast[name], plain[name], f"{name} (path {path})")
    if env is not None:
        monkeypatch.delenv(env)


@pytest.mark.parametrize("device,backend,env,paths", TRAINING_STEP_BACKENDS)
# The second shape's products (B·I·O = 9.4M multiply-adds) go to oneDNN on the CPU.
@pytest.mark.parametrize("shape", [(5, 24, 40), (64, 384, 384)])
def test_linear_step(device, backend, env, paths, shape, monkeypatch):
    if backend == "triton" and device == "cpu" and shape[0] > 8:
        pytest.skip("the interpreter is slow; the small shape covers the Triton launchers")
    case = make_linear_step_case(*shape, device=device, activation="tanh", num_classes=3,
                                 chain=True, chain_classes=3)  # fmt: skip
    if max(shape[1:]) > 128:  # the single launches hold at most 128 (Triton), 256 (CUDA)
        paths = [p for p in paths if p != "single"]

    def run(on: bool) -> dict:
        c = case.clone()
        with autocast(device) if on else torch.autocast(device, enabled=False):
            outputs = c.call(ops.linear_step, backend=backend)
        named = dict(zip(LINEAR_STEP_OUTPUTS, outputs))
        named.update({k: v for k, v in c.mutable().items() if v is not None})
        return named

    with_and_without_autocast(run, monkeypatch, env, paths)


@pytest.mark.parametrize("device,backend,env,paths", TRAINING_STEP_BACKENDS)
def test_sg_update(device, backend, env, paths, monkeypatch):
    case = make_sg_update_case(6, 40, device=device, num_classes=3)

    def run(on: bool) -> dict:
        c = case.clone()
        with autocast(device) if on else torch.autocast(device, enabled=False):
            loss = c.call(ops.sg_update, backend=backend)
        return {"loss": loss, **{k: v for k, v in c.mutable().items() if v is not None}}

    with_and_without_autocast(run, monkeypatch, env, paths)


@pytest.mark.parametrize("device,backend,env,paths", LSTM_BACKENDS)
# H = 64 takes the CPU's one-pass steps (AVX-512 or AVX2, where it has them), H = 9 its
# portable loop.
@pytest.mark.parametrize("shape", [(3, 4, 5, 9), (3, 8, 64, 64)])
def test_lstm_dni_window_forward_and_backward(device, backend, env, paths, shape, monkeypatch):
    """The window's forward and its backward (lstm_window_backward, sg_update) run under
    autocast: the backward of a loss computed inside an autocast region."""
    if backend == "triton" and device == "cpu" and shape[3] > 16:
        pytest.skip("the interpreter is slow; the small shape covers the Triton launchers")
    w, heads = _dni_inputs(shape, torch.float32, reads_cell=True, aux=True)
    gen = torch.Generator().manual_seed(3)
    grad_hs = torch.randn(shape[0], shape[1], shape[3], generator=gen).to(device)

    def run(on: bool) -> dict:
        leaves = [t.to(device).requires_grad_() for t in w + heads]
        with autocast(device) if on else torch.autocast(device, enabled=False):
            hs, cs, sg_raw = ops.lstm_dni_window(*leaves, sg_scale=0.3, sg_reads_cell=True,
                                                 backend=backend)  # fmt: skip
            hs.backward(grad_hs)
        names = ("x", "h0", "c0", "w_ih", "w_hh", "bias", "sg_weight", "sg_bias", "aux_weight", "aux_bias")
        return {"hs": hs, "cs": cs, "sg_raw": sg_raw,
                **{f"grad_{n}": t.grad for n, t in zip(names, leaves)}}  # fmt: skip

    with_and_without_autocast(run, monkeypatch, env, paths)


def test_compile_fullgraph_under_autocast():
    """torch.compile traces the autocast kernel: same result as eager without autocast."""
    case = make_linear_step_case(16, 40, 24, activation="tanh")
    compiled_case, eager_case = case.clone(), case.clone()
    step = torch.compile(lambda c: c.call(ops.linear_step), fullgraph=True)
    with autocast("cpu"):
        compiled = step(compiled_case)
    eager = eager_case.call(ops.linear_step)
    for name, a, e in zip(LINEAR_STEP_OUTPUTS, compiled, eager):
        assert_same(a, e, name)
    assert_same(compiled_case.weight, eager_case.weight, "weight")


def test_run_without_autocast_is_registered_for_every_op():
    """Each dni op has its autocast kernel, so a new op cannot miss it."""
    names = [n for n in dir(torch.ops.dni) if not n.startswith("__") and n not in ("name", "_dir")]
    ops_found = [getattr(torch.ops.dni, n) for n in names]
    ops_found = [op for op in ops_found if isinstance(op, torch._ops.OpOverloadPacket)]
    assert len(ops_found) >= 12, [str(op) for op in ops_found]
    for op in ops_found:
        for key in ("AutocastCPU", "AutocastCUDA"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(op.default.name(), key), (op, key)

