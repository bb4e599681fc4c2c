"""dni::lstm_window_forward_triton / lstm_window_backward_triton
(dni_kernels/triton/lstm_window.py) vs dni_kernels/reference.py.

Runs in the Triton interpreter on CPU tensors without a GPU (float32, float16), compiled
on CUDA tensors with one (bfloat16 and larger shapes only there); the window tests run
both step forms (DNI_TRITON_LSTM_STEP=fused|cublas). `check_window` is
shared with the CUDA C++ kernels' tests (test_lstm_cuda.py).
"""

from __future__ import annotations

import pytest
import torch

from dni_kernels import ops, reference
from op_log import OpLog
from test_lstm import GRAD_NAMES, _dni_inputs, make_window
from tolerances import assert_close, assert_low_precision_close
from triton_helpers import DEVICES, INTERPRETED, compile_for_sm90, skip_unsupported

# (T, B, I, H): batch 1; H off multiples of the 32-unit tile; two unit tiles and two
# K steps (40); two row tiles (70 > 64 rows).
SHAPES = [(1, 1, 3, 5), (3, 3, 7, 20), (2, 2, 4, 40), (1, 70, 3, 5)]
GPU_SHAPES = [(16, 64, 96, 160), (5, 257, 33, 300)]  # compiled only: slow interpreted
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Present (1) / absent (0) gradients: grad_hs, grad_cs, grad_h_end, grad_c_end.
GRAD_MASKS = [(1, 1, 1, 1), (1, 0, 0, 0), (0, 1, 1, 0), (0, 0, 0, 1)]


def _strided(t):
    """t's values in a view with doubled strides (a non-contiguous input)."""
    return torch.stack([t, torch.zeros_like(t)], -1)[..., 0]


def window_inputs(shape, dtype, device, *, bias=True, noncontig=False, seed=0):
    """make_window's float64 tensors on `device`, then cast; with `noncontig`, x, h0
    and c0 are strided views and w_hh is stored transposed."""
    w = [t.to(device) if t is not None else None for t in make_window(*shape, bias=bias, seed=seed)]
    w = [t.to(dtype) if t is not None else None for t in w]
    if noncontig:
        w[0], w[1], w[2] = _strided(w[0]), _strided(w[1]), _strided(w[2])
        w[4] = w[4].t().contiguous().t()
    return w


def _compare(got, expected_lowp, expected_f64, names):
    """float32: the tolerance table vs the float32 reference; half precisions: error vs
    float64 at most 2x that of the reference run by PyTorch in the same dtype."""
    for g, e, e64, n in zip(got, expected_lowp, expected_f64, names):
        assert g.dtype == e.dtype, f"{n}: dtype {g.dtype}"
        if g.dtype == torch.float32:
            assert_close(g, e, n)
        else:
            assert_low_precision_close(g, e, e64, n)


def check_window(shape, dtype, device, backend, bias, noncontig):
    """Forward and, for every combination of present gradients, backward of `backend`
    vs the reference (in `dtype` and in float64)."""
    w = window_inputs(shape, dtype, device, bias=bias, noncontig=noncontig)
    w64 = [t.double() if t is not None else None for t in w]
    got = ops.lstm_window_forward(*w, backend=backend)
    expected, expected64 = reference.lstm_window_forward(*w), reference.lstm_window_forward(*w64)
    _compare(got, expected, expected64, ("hs", "cs", "gates"))
    steps, batch, _, hidden = shape
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(*s, generator=gen, dtype=torch.float64).to(device)
             for s in ((steps, batch, hidden),) * 2 + ((batch, hidden),) * 2]  # fmt: skip
    for mask in GRAD_MASKS:
        g64 = [t if m else None for t, m in zip(grads, mask)]
        g = [t.to(dtype) if t is not None else None for t in g64]
        got_b = ops.lstm_window_backward(*g, *w[:5], *got, backend=backend)
        exp_b = reference.lstm_window_backward(*g, *w[:5], *expected)
        exp64_b = reference.lstm_window_backward(*g64, *w64[:5], *expected64)
        _compare(got_b, exp_b, exp64_b, [f"{n}{mask}" for n in GRAD_NAMES])


@pytest.fixture(params=["fused", "cublas"])
def step_form(request, monkeypatch):
    """Where each step's recurrent product runs: in the step kernel, or torch.mm (cuBLAS
    on a GPU) with the kernel reading its result (read by the ops on every call)."""
    monkeypatch.setenv("DNI_TRITON_LSTM_STEP", request.param)
    return request.param


@pytest.mark.parametrize("bias,noncontig", [(True, False), (False, True)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_window_matches_reference(shape, device, dtype, bias, noncontig, step_form):
    skip_unsupported(device, dtype)
    check_window(shape, dtype, device, "triton", bias, noncontig)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_large_on_gpu(shape, dtype, step_form):
    check_window(shape, dtype, "cuda", "triton", True, True)


def test_empty_batch(step_form):
    """B = 0: no programs to launch, empty outputs, zero weight gradients."""
    check_window((2, 0, 3, 5), torch.float32, _device(), "triton", True, False)


def _device():
    return "cpu" if INTERPRETED else "cuda"


def test_autograd_runs_the_backward_on_the_same_backend():
    """ops.lstm_window_forward(backend="triton") and ops.lstm_cell: autograd's
    backward is the Triton twin of the backward op, with the reference's gradients."""
    w = window_inputs((3, 2, 4, 6), torch.float32, _device(), noncontig=True)
    ins = [t.clone().requires_grad_() for t in w]
    ref = [t.clone().requires_grad_() for t in w]
    target = torch.randn(3, 2, 6, device=_device())
    hs, cs, _ = ops.lstm_window_forward(*ins, backend="triton")
    with OpLog() as log:
        ((hs - target) ** 2).sum().add(cs[-1].sum()).backward()
    assert log.ops == ["lstm_window_backward_triton"], log.ops
    hs_r, cs_r, _ = reference.lstm_window_forward(*ref)
    ((hs_r - target) ** 2).sum().add(cs_r[-1].sum()).backward()
    for a, e, n in zip(ins, ref, GRAD_NAMES):
        assert_close(a.grad, e.grad, n)
    h, c, _ = ops.lstm_cell(ins[0][0], *ins[1:], backend="triton")
    h_r, c_r, _ = reference.lstm_cell(ref[0][0], *ref[1:])
    assert_close(h, h_r, "cell h")
    assert_close(c, c_r, "cell c")


@pytest.mark.parametrize("reads_cell,aux,bootstrap", [(False, False, True), (True, True, True),
                                                      (True, False, False)])  # fmt: skip
def test_dni_window_matches_reference(reads_cell, aux, bootstrap, step_form):
    """ops.lstm_dni_window(backend="triton"): the composite over the Triton twins; its
    backward runs lstm_window_backward_triton and sg_update_triton only."""
    w, heads = _dni_inputs((4, 3, 5, 9), torch.float32, reads_cell, aux)
    w, heads = ([t.to(_device()) if t is not None else None for t in ts] for ts in (w, heads))
    kw = dict(sg_scale=0.3, sg_reads_cell=reads_cell, bootstrap=bootstrap, aux_loss_weight=0.5)
    leaves = [t.clone().requires_grad_() for t in w + heads if t is not None]
    hs, _, sg_raw = ops.lstm_dni_window(*leaves[:8], *(leaves[8:] or [None, None]), backend="triton", **kw)
    grad_hs = torch.randn(hs.shape, device=_device())
    with OpLog() as log:
        got = torch.autograd.grad(hs, leaves, grad_hs)
    assert set(log.ops) == {"lstm_window_backward_triton", "sg_update_triton"}, log.ops
    r = reference.lstm_dni_window(*w, *heads, grad_hs=grad_hs, **kw)
    assert_close(hs, r.hs, "hs")
    assert_close(sg_raw[:2], r.sg_raw, "sg_raw")
    names = GRAD_NAMES + ("grad_sg_weight", "grad_sg_bias", "grad_aux_weight", "grad_aux_bias")
    for g, n in zip(got, [n for n in names if getattr(r, n) is not None]):
        assert_close(g, getattr(r, n), n)


def _opcheck_samples():
    w = window_inputs((3, 2, 5, 4), torch.float32, _device(), noncontig=True)
    yield "lstm_window_forward_triton", [t.clone().requires_grad_() for t in w]
    hs, cs, gates = ops.lstm_window_forward(*w, backend="triton")
    g = torch.randn(3, 2, 4, device=_device())
    yield "lstm_window_backward_triton", (g, None, g[0], None, *w[:5], hs, cs, gates)
    yield "lstm_window_backward_triton", (None, g, None, g[1], *w[:5], hs, cs, gates, False)
    wd, heads = _dni_inputs((3, 2, 5, 4), torch.float32, True, True)
    yield "lstm_dni_window_triton", (*[t.to(_device()).requires_grad_() for t in wd + heads], 0.1, True, True, 0.5)


@pytest.mark.parametrize("i", range(len(list(_opcheck_samples()))))
def test_opcheck(i):
    name, args = list(_opcheck_samples())[i]
    torch.library.opcheck(getattr(torch.ops.dni, name).default, tuple(args))


def test_compile_fullgraph():
    """Forward, loss and backward of the Triton twins under torch.compile."""
    w = window_inputs((3, 2, 4, 6), torch.float32, _device())
    target = torch.randn(3, 2, 6, device=_device())

    def step(*leaves):
        hs, cs, _ = ops.lstm_window_forward(*leaves, backend="triton")
        return ((hs - target) ** 2).sum() + cs[-1].sum()

    eager = [t.clone().requires_grad_() for t in w]
    compiled = [t.clone().requires_grad_() for t in w]
    step(*eager).backward()
    torch.compile(step, fullgraph=True)(*compiled).backward()
    for a, e, n in zip(compiled, eager, GRAD_NAMES):
        assert_close(a.grad, e.grad, n)


def test_bad_input():
    """The shared C++ checks' messages, raised before anything is allocated; float64
    (no Triton fast path) is refused with a pointer to the C++ kernels."""
    w = window_inputs((3, 2, 4, 5), torch.float32, _device())
    with pytest.raises(RuntimeError, match="h0 must have shape"):
        ops.lstm_window_forward(w[0], w[1][:1], *w[2:], backend="triton")
    with pytest.raises(RuntimeError, match="w_hh must have shape"):
        ops.lstm_window_forward(*w[:4], w[4].t(), w[5], backend="triton")
    with pytest.raises(TypeError, match="backend='auto'"):
        ops.lstm_window_forward(*[t.double() for t in w], backend="triton")
    hs, cs, gates = ops.lstm_window_forward(*w, backend="triton")
    g = torch.randn(3, 2, 5, device=_device())
    with pytest.raises(RuntimeError, match="grad_cs must have shape"):
        ops.lstm_window_backward(None, g[:2], None, None, *w[:5], hs, cs, gates, backend="triton")
    with pytest.raises(RuntimeError, match="gates must be contiguous"):
        ops.lstm_window_backward(g, None, None, None, *w[:5], hs, cs,
                                 gates.transpose(0, 1).contiguous().transpose(0, 1),
                                 backend="triton")  # fmt: skip


def test_kernels_compile_for_gpu():
    """bfloat16 (untestable in the interpreter), every constexpr flag on, the
    launcher's largest blocks: both kernels compile for sm_90."""
    blocks = dict(BLOCK_B=64, BLOCK_H=32, BLOCK_K=32)
    kernels = {"_forward_step_kernel": blocks, "_backward_step_kernel": blocks}
    compile_for_sm90("dni_kernels.triton.lstm_window", kernels, act="bf16", param="bf16")
    # The library step form: the products come in, no dot loop (RECURRENT off).
    library = dict(blocks, RECURRENT=False)
    kernels = {"_forward_step_kernel": library, "_backward_step_kernel": library}
    compile_for_sm90("dni_kernels.triton.lstm_window", kernels, act="bf16", param="bf16")


def test_unknown_step_form_refused(monkeypatch):
    w = window_inputs((2, 2, 3, 4), torch.float32, _device())
    monkeypatch.setenv("DNI_TRITON_LSTM_STEP", "tensor_cores")
    with pytest.raises(ValueError, match="DNI_TRITON_LSTM_STEP must be auto, fused or cublas"):
        ops.lstm_window_forward(*w, backend="triton")
