"""The CUDA C++ kernels of dni::lstm_window_forward / lstm_window_backward
(csrc/cuda/lstm_window*.{cpp,cu}) vs dni_kernels/reference.py.

* Build check, no GPU needed: a CUDA build registers both ops' CUDA kernels and links
  both step kernels' device code. With DNI_REQUIRE_CUDA_BUILD=1 (CI) a build without
  them fails here instead of skipping.
* GPU tests (skipped without a GPU), for both places of the per-step recurrent GEMM
  (DNI_CUDA_LSTM_STEP=fused: in the step kernel; cublas: cuBLAS, then the gate
  kernel): forward and every combination of backward gradients vs the reference
  (float32 with the tolerance table, float16/bfloat16 with the "2x PyTorch's own
  error" rule), odd and strided shapes, a long window, autograd through the
  bootstrapped window, opcheck, torch.compile(fullgraph=True), float64 and an unknown
  DNI_CUDA_LSTM_STEP refused.
"""

from __future__ import annotations


import pytest
import torch

from dni_kernels import ops, reference
from test_lstm import GRAD_NAMES, _dni_inputs
from test_lstm_triton import DTYPES, GPU_SHAPES, SHAPES, check_window, window_inputs
from cuda_build import assert_cuda_kernels_built
from tolerances import assert_close

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
OPS = ("lstm_window_forward", "lstm_window_backward")


@pytest.fixture(params=["fused", "cublas"])
def step_gemm(request, monkeypatch):
    """Where each step's recurrent GEMM runs (read by the ops on every call)."""
    monkeypatch.setenv("DNI_CUDA_LSTM_STEP", request.param)
    return request.param


def test_cuda_lstm_kernels_registered():
    assert_cuda_kernels_built(OPS, (b"lstm_forward_step_kernel", b"lstm_backward_step_kernel"))


@GPU
@pytest.mark.parametrize("bias,noncontig", [(True, False), (False, True)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + GPU_SHAPES + [(64, 3, 8, 24)])
def test_window_matches_reference(shape, dtype, bias, noncontig, step_gemm):
    check_window(shape, dtype, "cuda", "cuda", bias, noncontig)


@GPU
def test_empty_batch(step_gemm):
    check_window((2, 0, 3, 5), torch.float32, "cuda", "cuda", True, False)


@GPU
@pytest.mark.parametrize("reads_cell,aux", [(False, False), (True, True)])
def test_dni_window_autograd_on_gpu(reads_cell, aux, step_gemm):
    """The bootstrapped window (a C++ composite that calls the window ops through the
    dispatcher) runs on the CUDA kernels, with the reference's gradients."""
    w, heads = _dni_inputs((6, 5, 7, 19), torch.float32, reads_cell, aux)
    kw = dict(sg_scale=0.3, sg_reads_cell=reads_cell, bootstrap=True, aux_loss_weight=0.5)
    leaves = [t.cuda().requires_grad_() for t in w + heads if t is not None]
    hs, _, _ = ops.lstm_dni_window(*leaves[:8], *(leaves[8:] or [None, None]), **kw)
    grad_hs = torch.randn(hs.shape, device="cuda")
    got = torch.autograd.grad(hs, leaves, grad_hs)
    r = reference.lstm_dni_window(*[t.cuda() if t is not None else None for t in w + heads],
                                  grad_hs=grad_hs, **kw)  # fmt: skip
    assert_close(hs, r.hs, "hs")
    names = GRAD_NAMES + ("grad_sg_weight", "grad_sg_bias", "grad_aux_weight", "grad_aux_bias")
    for g, n in zip(got, [n for n in names if getattr(r, n) is not None]):
        assert_close(g, getattr(r, n), n)


@GPU
def test_opcheck_and_compile():
    w = window_inputs((3, 2, 5, 4), torch.float32, "cuda", noncontig=True)
    torch.library.opcheck(torch.ops.dni.lstm_window_forward.default,
                          tuple(t.clone().requires_grad_() for t in w))  # fmt: skip
    hs, cs, gates = ops.lstm_window_forward(*w)
    g = torch.randn(3, 2, 4, device="cuda")
    torch.library.opcheck(torch.ops.dni.lstm_window_backward.default,
                          (g, None, g[0], None, *w[:5], hs, cs, gates))  # fmt: skip
    target = torch.randn(3, 2, 4, device="cuda")

    def step(*leaves):
        hs, cs, _ = ops.lstm_window_forward(*leaves)
        return ((hs - target) ** 2).sum() + cs[-1].sum()

    eager = [t.clone().requires_grad_() for t in w]
    compiled = [t.clone().requires_grad_() for t in w]
    step(*eager).backward()
    torch.compile(step, fullgraph=True)(*compiled).backward()
    for a, e, n in zip(compiled, eager, GRAD_NAMES):
        assert_close(a.grad, e.grad, n)


@GPU
def test_float64_refused():
    w = window_inputs((2, 2, 3, 4), torch.float64, "cuda")
    with pytest.raises(RuntimeError, match="on CUDA takes float32, float16 or bfloat16"):
        ops.lstm_window_forward(*w)


@GPU
def test_unknown_step_gemm_refused(monkeypatch):
    w = window_inputs((2, 2, 3, 4), torch.float32, "cuda")
    hs, cs, gates = ops.lstm_window_forward(*w)
    monkeypatch.setenv("DNI_CUDA_LSTM_STEP", "tensor_cores")
    with pytest.raises(RuntimeError, match="DNI_CUDA_LSTM_STEP must be auto, fused or cublas"):
        ops.lstm_window_forward(*w)
    g = torch.randn(2, 2, 4, device="cuda")
    with pytest.raises(RuntimeError, match="DNI_CUDA_LSTM_STEP"):
        torch.ops.dni.lstm_window_backward(g, None, None, None, *w[:5], hs, cs, gates)
