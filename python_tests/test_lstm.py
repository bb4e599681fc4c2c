"""The LSTM window ops (dni::lstm_window_forward/_backward, dni::lstm_dni_window) on
CPU vs dni_kernels/reference.py and torch.nn.LSTM, plus the oracle exactness of the
bootstrap: with the true future gradient at every boundary, windowed BPTT is full BPTT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import cpu_gemm
from dni_kernels import ops, reference
from op_log import OpLog
from tolerances import assert_close, tol
from triton_helpers import INTERPRETED

# (T, B, I, H): batch 1, sizes that are not multiples of 16, one long window, no input
# features.
SHAPES = [(1, 1, 3, 5), (7, 3, 10, 17), (4, 5, 16, 33), (64, 2, 3, 7), (2, 3, 0, 5)]
DTYPES = [torch.float32, torch.float64]


def make_window(steps, batch, inp, hidden, *, dtype=torch.float64, bias=True,
                noncontig=False, seed=0):  # fmt: skip
    """x, h0, c0, w_ih, w_hh, bias; with `noncontig`, x and h0 are strided views."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    x = r(steps, batch, 2 * inp)[..., ::2] if noncontig else r(steps, batch, inp)
    h0 = r(batch, 2 * hidden, scale=0.5)[:, 1::2] if noncontig else r(batch, hidden, scale=0.5)
    c0 = r(batch, hidden, scale=0.5)
    k = hidden**-0.5
    return (x, h0, c0, r(4 * hidden, inp, scale=k), r(4 * hidden, hidden, scale=k),
            r(4 * hidden, scale=0.1) if bias else None)  # fmt: skip


def nn_lstm_like(w_ih, w_hh, bias):
    """torch.nn.LSTM with the given weights (the bias goes into b_ih, b_hh = 0)."""
    lstm = torch.nn.LSTM(w_ih.shape[1], w_hh.shape[1], bias=bias is not None, dtype=w_ih.dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(w_ih)
        lstm.weight_hh_l0.copy_(w_hh)
        if bias is not None:
            lstm.bias_ih_l0.copy_(bias)
            lstm.bias_hh_l0.zero_()
    return lstm


def _close_all(got, expected, names):
    for g, e, n in zip(got, expected, names):
        assert_close(g, e, n)


GRAD_NAMES = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_bias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias,noncontig", [(True, False), (False, True)])
def test_window_matches_reference(shape, dtype, bias, noncontig):
    _check_window_against_reference(shape, dtype, bias, noncontig)


@pytest.mark.parametrize("gemm,mkldnn", cpu_gemm.CHOICES, ids=cpu_gemm.CHOICE_IDS)
def test_window_onednn_and_blas_paths(gemm, mkldnn, monkeypatch):
    """Batch 32, H = 264: every product is large enough for oneDNN, and 17 steps enough
    to pack the recurrent weight for the forward's per-step products (the backward's
    W_hhᵀ is too small to pack); under each $DNI_CPU_GEMM and with oneDNN switched off
    by the user. (H is not a multiple of 16, so the steps take neither one-pass kind.)"""
    from torch.profiler import ProfilerActivity, profile

    monkeypatch.setenv("DNI_CPU_GEMM", gemm)
    shape = (17, 32, 40, 264)
    w = make_window(*shape, dtype=torch.float32, noncontig=True)
    grads = [torch.randn(17, 32, 264), None, torch.randn(32, 264), None]
    with torch.backends.mkldnn.flags(enabled=mkldnn):
        _check_window_against_reference(shape, torch.float32, True, True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ops.lstm_window_backward(*grads, *w[:5], *ops.lstm_window_forward(*w))
    names = [e.name for e in prof.events()]
    packed = cpu_gemm.runs_onednn(gemm, mkldnn, repeated=True)
    single = cpu_gemm.runs_onednn(gemm, mkldnn)
    assert ("mkldnn::_reorder_linear_weight" in names) == packed
    # The forward's 17 step products on the packed W_hh; the input projection, the
    # backward's 16 step products, grad_x and grad_h0 (the weight gradients are BLAS's
    # TN products).
    onednn_products = names.count("mkldnn::_linear_pointwise")
    assert onednn_products == 17 * packed + (1 + 16 + 2) * single


# Run in a fresh process per setting: the advice stays on an address range after its
# block is freed, and glibc may serve a later block (in this process, perhaps from its
# heap) from an advised range. The child prints whether each output's mapping carries
# MADV_HUGEPAGE ("hg" among /proc/self/smaps' VmFlags; None: no such line).
_HUGE_PAGE_CHILD = """
import json, torch
from dni_kernels import ops

def advised(t):
    address = t.data_ptr() + t.nbytes // 2
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):  # a mapping's "start-end perms ..."
                start, end = (int(a, 16) for a in head.split("-"))
                inside = start <= address < end
            elif inside and head == "VmFlags:":
                return "hg" in line.split()[1:]
    return None

def window(steps, batch, inp, hidden):
    r = lambda *shape: torch.randn(*shape) * 0.1
    return (r(steps, batch, inp), r(batch, hidden), r(batch, hidden), r(4 * hidden, inp),
            r(4 * hidden, hidden), r(4 * hidden))

small = ops.lstm_window_forward(*window(3, 2, 4, 16))[2]  # 2 KiB: never advised
w = window(64, 2048, 64, 64)  # hs, cs and grad_x 32 MiB each, gates 128 MiB
hs, cs, gates = ops.lstm_window_forward(*w)
grad_x = ops.lstm_window_backward(torch.randn_like(hs), None, None, None, *w[:5], hs, cs,
                                  gates)[0]
outputs = dict(small=small, hs=hs, cs=cs, gates=gates, grad_x=grad_x)
assert all(t.nbytes >= 32 << 20 for n, t in outputs.items() if n != "small")
print(json.dumps({n: advised(t) for n, t in outputs.items()}))
"""


@pytest.mark.skipif(not os.path.exists("/sys/kernel/mm/transparent_hugepage"),
                    reason="huge-page advice needs Linux with THP")  # fmt: skip
@pytest.mark.parametrize("setting", ["auto", "off"])
def test_window_large_outputs_get_huge_page_advice(setting):
    """Outputs of 32 MiB and more (csrc/include/dni/large_output.h) are advised to use
    huge pages before their first write: hs and cs, and on the BLAS path gates and
    grad_x; none with $DNI_CPU_HUGE_PAGES=off, and never a small one."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    # oneDNN's op allocates its own outputs; torch's allocator would advise every large
    # block itself with THP_MEM_ALLOC_ENABLE=1.
    env.update(DNI_CPU_GEMM="blas", DNI_CPU_HUGE_PAGES=setting, THP_MEM_ALLOC_ENABLE="0")
    child = subprocess.run([sys.executable, "-c", _HUGE_PAGE_CHILD], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert child.returncode == 0, child.stderr
    advised = json.loads(child.stdout.strip().splitlines()[-1])
    if None in advised.values():
        pytest.skip("/proc/self/smaps has no VmFlags here")
    large = setting == "auto"
    assert advised == dict(small=False, hs=large, cs=large, gates=large, grad_x=large)


def test_bad_huge_pages_setting_raises(monkeypatch):
    monkeypatch.setenv("DNI_CPU_HUGE_PAGES", "on")
    with pytest.raises(RuntimeError, match="DNI_CPU_HUGE_PAGES must be auto or off, got 'on'"):
        ops.lstm_window_forward(*make_window(3, 2, 4, 16, dtype=torch.float32))


# The CPU's one-pass steps for float32 (csrc/cpu/lstm_window_steps.h): AVX-512 with H a
# multiple of 64 where the CPU has it, else AVX2 with H a multiple of 16; "loop" is the
# portable path (a product per step, then a gate loop). Each test below runs every mode
# this CPU has, through $DNI_CPU_LSTM_STEP. (torch's capability, which these follow,
# can be lowered by $ATEN_CPU_CAPABILITY, the kernels' CPU check cannot: leave it unset.)
# $DNI_EMULATE_AVX512=1 marks a build whose AVX-512 steps run emulated on any x86-64
# CPU (scripts/check_avx512_emulated.sh).
CPU_CAPABILITY = torch.backends.cpu.get_cpu_capability()
AVX512_STEPS = CPU_CAPABILITY == "AVX512" or os.environ.get("DNI_EMULATE_AVX512") == "1"
STEP_MODES = ["loop"] + ["avx2"] * (CPU_CAPABILITY in ("AVX2", "AVX512")) + [
    "avx512"] * AVX512_STEPS  # fmt: skip
PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "mkldnn::_linear_pointwise"}


def _products(fn) -> int:
    """How many library products (oneDNN or BLAS calls) fn() makes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name in PRODUCTS for e in prof.events())


@pytest.fixture(params=STEP_MODES)
def step_mode(request, monkeypatch):
    monkeypatch.setenv("DNI_CPU_LSTM_STEP", request.param)
    return request.param


# (T, B, I, H): batch 1 and every tile length of both ISAs' kernels (1–6 rows, in 16-row
# tasks with AVX-512 and 12-row ones with AVX2: B = 16 leaves a 4-row tile for AVX2),
# with one-tile tasks where those leave under 2 tasks per thread; a 1- or 2-row rest
# split evenly with the last full tile (B = 20: 4 + 4 in both AVX2 passes; B = 14 at
# H = 256: 6 + 4 + 4 in both AVX-512 passes, the backward's write-prefetch shares
# following the tiles' rows; B = 7: 4 + 3 in the AVX2 forward); two unit blocks of the
# AVX-512 backward; H = 48, which only AVX2 and the loop take, and H = 1040, 65 AVX2 unit
# blocks (auto takes the AVX2 steps up to B = 256 at H = 1024). (The tile lengths quoted
# are with 2 threads.)
SHAPES_ONE_PASS = [(1, 1, 3, 64), (3, 5, 7, 64), (2, 16, 5, 64), (2, 20, 5, 64), (2, 14, 3, 256),
                   (2, 35, 9, 64), (2, 50, 4, 64), (4, 9, 5, 128), (2, 7, 5, 48),
                   (2, 13, 5, 1040)]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES_ONE_PASS)
def test_window_one_pass_steps(shape, step_mode):
    """float32, H a multiple of 16, non-contiguous inputs, in every step mode: the same
    results as the reference, and with one-pass steps no per-step product: the forward
    makes one (the input projection), the backward three (grad_x and the two weight
    gradients; grad_h0 comes from the steps' own tiles)."""
    if step_mode == "avx512" and shape[3] % 64:
        pytest.skip("the AVX-512 steps take H a multiple of 64")
    _check_window_against_reference(shape, torch.float32, True, True)
    steps = shape[0]
    w = make_window(*shape, dtype=torch.float32, noncontig=True)
    grads = [torch.randn(shape[0], shape[1], shape[3]), None, torch.randn(shape[1], shape[3]), None]
    out = ops.lstm_window_forward(*w)
    count = [_products(lambda: ops.lstm_window_forward(*w)),
             _products(lambda: ops.lstm_window_backward(*grads, *w[:5], *out))]
    assert count == ([1 + steps, 3 + steps + (steps > 1)] if step_mode == "loop" else [1, 3])


@pytest.mark.parametrize("threads", [1, 3])
def test_window_one_pass_steps_on_any_thread_count(threads, step_mode):
    """A window's steps split their tasks among the threads of one parallel region
    (run_steps_in_one_region): 1 thread, or 3 on a 2-core machine (uneven shares),
    gives the results of the default count, every task run once (the library products
    around the steps may round differently per thread count, hence assert_close)."""
    shape = (4, 20, 9, 64)  # 16 and 8 AVX2 tasks (8 and 4 AVX-512): uneven over 3 threads
    w = make_window(*shape, dtype=torch.float32)
    grads = [torch.randn(shape[0], shape[1], shape[3]), None, torch.randn(shape[1], shape[3]),
             torch.randn(shape[1], shape[3])]  # fmt: skip

    def run():
        out = ops.lstm_window_forward(*w)
        return (*out, *ops.lstm_window_backward(*grads, *w[:5], *out))

    expected = run()
    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = run()
    finally:
        torch.set_num_threads(default)
    _close_all(got, expected, ("hs", "cs", "gates", *GRAD_NAMES))


def test_auto_step_mode_takes_the_cpus_one_pass_steps(monkeypatch):
    """Unset, $DNI_CPU_LSTM_STEP is auto: on a CPU with AVX2 or AVX-512, float32 with H a
    multiple of 64 makes no per-step product (float64 and H = 37 take the loop)."""
    monkeypatch.delenv("DNI_CPU_LSTM_STEP", raising=False)
    for dtype, hidden in ((torch.float32, 64), (torch.float64, 64), (torch.float32, 37)):
        w = make_window(3, 4, 5, hidden, dtype=dtype)
        one_pass = dtype == torch.float32 and hidden == 64 and len(STEP_MODES) > 1
        assert _products(lambda: ops.lstm_window_forward(*w)) == (1 if one_pass else 4)


def test_auto_takes_the_avx2_steps_only_for_small_step_products(monkeypatch):
    """With AVX2 and no AVX-512, auto takes the portable path above 2³⁰ multiply-adds per
    step product (B·4H·H), the largest size measured; with AVX-512, its steps."""
    if len(STEP_MODES) == 1:
        pytest.skip("no AVX2 on this CPU")
    monkeypatch.delenv("DNI_CPU_LSTM_STEP", raising=False)
    avx2_only = "avx512" not in STEP_MODES
    steps = 2
    for batch, loop in ((257, avx2_only), (256, False)):  # 257·4·1024² > 2³⁰ = 256·4·1024²
        w = make_window(steps, batch, 1, 1024, dtype=torch.float32)
        out = ops.lstm_window_forward(*w)
        assert _products(lambda: ops.lstm_window_forward(*w)) == (1 + steps if loop else 1)
        g = torch.randn(steps, batch, 1024)
        backward = _products(lambda: ops.lstm_window_backward(g, None, None, None, *w[:5], *out))
        assert backward == (3 + steps + 1 if loop else 3)


@pytest.mark.parametrize("mode,dtype,hidden,match", [
    ("avx3", torch.float32, 64, "must be auto, avx512, avx2 or loop"),
    ("avx2", torch.float64, 64, "DNI_CPU_LSTM_STEP=avx2 but .* Double, hidden size 64"),
    ("avx2", torch.float32, 40, "multiple of 16; got Float, hidden size 40"),
    ("avx512", torch.float32, 96, "DNI_CPU_LSTM_STEP=avx512 but"),
])  # fmt: skip
def test_forced_step_mode_it_cannot_take_raises(mode, dtype, hidden, match, monkeypatch):
    """A forced step mode that the CPU or the input cannot take is refused, naming the
    setting, before any output is written (AVX-512 needs H a multiple of 64, so H = 96
    is refused on any CPU)."""
    monkeypatch.setenv("DNI_CPU_LSTM_STEP", mode)
    w = make_window(2, 3, 4, hidden, dtype=dtype)
    with pytest.raises(RuntimeError, match=match):
        ops.lstm_window_forward(*w)


def _check_window_against_reference(shape, dtype, bias, noncontig):
    w = make_window(*shape, dtype=dtype, bias=bias, noncontig=noncontig)
    got = ops.lstm_window_forward(*w)
    expected = reference.lstm_window_forward(*w)
    _close_all(got, expected, ("hs", "cs", "gates"))
    gen = torch.Generator().manual_seed(1)
    steps, batch, _, hidden = shape
    grads = [torch.randn(*s, generator=gen, dtype=torch.float64).to(dtype)
             for s in ((steps, batch, hidden),) * 2 + ((batch, hidden),) * 2]  # fmt: skip
    # Every combination of present and absent gradients goes through one path each.
    for mask in ((1, 1, 1, 1), (1, 0, 0, 0), (0, 1, 1, 0), (0, 0, 0, 1)):
        g = [t if m else None for t, m in zip(grads, mask)]
        got_b = ops.lstm_window_backward(*g, *w[:5], *got)
        exp_b = reference.lstm_window_backward(*g, *w[:5], *expected)
        _close_all(got_b, exp_b, [f"{n}{mask}" for n in GRAD_NAMES])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 3, 5), (9, 4, 11, 19)])
def test_window_matches_nn_lstm(shape, dtype):
    """Forward and autograd backward (a loss on hs and on the final c) vs nn.LSTM."""
    x, h0, c0, w_ih, w_hh, b = make_window(*shape, dtype=dtype)
    lstm = nn_lstm_like(w_ih, w_hh, b)
    ins = [t.clone().requires_grad_() for t in (x, h0, c0, w_ih, w_hh, b)]
    target = torch.randn(shape[0], shape[1], shape[3], dtype=dtype)
    hs, cs, _ = ops.lstm_window_forward(*ins)
    ((hs - target) ** 2).sum().add(cs[-1].sum()).backward()
    x2, h2, c2 = (t.clone().requires_grad_() for t in (x, h0, c0))
    out, (_, c_n) = lstm(x2, (h2[None], c2[None]))
    ((out - target) ** 2).sum().add(c_n.sum()).backward()
    assert_close(hs, out, "hs")
    expected = [x2.grad, h2.grad, c2.grad, lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad,
                lstm.bias_hh_l0.grad]  # fmt: skip
    _close_all([t.grad for t in ins], expected, GRAD_NAMES)
    assert_close(lstm.bias_ih_l0.grad, lstm.bias_hh_l0.grad, "nn.LSTM's two bias grads")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_matches_reference_and_nn_lstm_cell(dtype):
    x, h, c, w_ih, w_hh, b = make_window(1, 3, 6, 13, dtype=dtype, noncontig=True)
    x = x[0]
    ins = [t.clone().requires_grad_() for t in (x, h, c, w_ih, w_hh, b)]
    ref = [t.clone().requires_grad_() for t in (x, h, c, w_ih, w_hh, b)]
    got = ops.lstm_cell(*ins)
    expected = reference.lstm_cell(*ref)
    _close_all(got, expected, ("h", "c", "gates"))
    cell = torch.nn.LSTMCell(6, 13, dtype=dtype)
    with torch.no_grad():
        cell.weight_ih.copy_(w_ih), cell.weight_hh.copy_(w_hh), cell.bias_ih.copy_(b), cell.bias_hh.zero_()
    h_nn, c_nn = cell(x, (h, c))
    _close_all(got[:2], (h_nn, c_nn), ("h vs LSTMCell", "c vs LSTMCell"))
    gen = torch.Generator().manual_seed(3)
    gh, gc = (torch.randn(3, 13, generator=gen, dtype=torch.float64).to(dtype) for _ in range(2))
    torch.autograd.backward(got[:2], (gh, gc))
    torch.autograd.backward(expected[:2], (gh, gc))
    _close_all([t.grad for t in ins], [t.grad for t in ref], GRAD_NAMES)


@pytest.mark.parametrize("backend", ["auto", pytest.param("triton", marks=pytest.mark.skipif(
    not INTERPRETED, reason="Triton on CPU tensors needs TRITON_INTERPRET=1"))])
def test_backward_without_grad_x(backend):
    """compute_grad_x=False: grad_x is an empty tensor, the other gradients unchanged;
    autograd asks for it exactly when x requires grad."""
    w = make_window(4, 3, 6, 9, dtype=torch.float32, noncontig=True)
    hs, cs, gates = ops.lstm_window_forward(*w, backend=backend)
    g = torch.randn(4, 3, 9)
    full = ops.lstm_window_backward(g, None, None, None, *w[:5], hs, cs, gates, backend=backend)
    skip = ops.lstm_window_backward(g, None, None, None, *w[:5], hs, cs, gates, False,
                                    backend=backend)  # fmt: skip
    ref = reference.lstm_window_backward(g, None, None, None, *w[:5], hs, cs, gates, False)
    assert skip[0].shape == ref[0].shape == (0,)
    _close_all(skip[1:], full[1:], GRAD_NAMES[1:])
    for x_needs_grad in (True, False):
        leaves = [t.clone().requires_grad_(i > 0 or x_needs_grad) for i, t in enumerate(w)]
        with OpLog() as log:
            hs, _, _ = ops.lstm_window_forward(*leaves, backend=backend)
            hs.backward(g)
        (call,) = [(args, kw) for name, args, kw in log.calls if "backward" in name]
        args, kwargs = call
        assert (args[12] if len(args) > 12 else kwargs.get("compute_grad_x", True)) is x_needs_grad
        assert (leaves[0].grad is not None) is x_needs_grad
        _close_all([t.grad for t in leaves[1:]], full[1:], GRAD_NAMES[1:])


def test_gradcheck_float64():
    w = [t.requires_grad_() for t in make_window(4, 2, 3, 5, noncontig=True)]
    assert torch.autograd.gradcheck(lambda *a: ops.lstm_window_forward(*a)[:2], w)
    assert torch.autograd.gradcheck(lambda *a: ops.lstm_cell(a[0][0], *a[1:])[:2], w)
    no_bias = w[:5] + [None]
    assert torch.autograd.gradcheck(lambda *a: ops.lstm_window_forward(*a, None)[1], no_bias[:5])


def _dni_inputs(shape, dtype, reads_cell, aux, seed=0):
    w = list(make_window(*shape, dtype=dtype, seed=seed))
    gen = torch.Generator().manual_seed(seed + 7)
    feat = shape[3] * (2 if reads_cell else 1)

    def r(*s):
        return (torch.randn(*s, generator=gen, dtype=torch.float64) * 0.3).to(dtype)

    heads = [r(feat, feat), r(feat)] + ([r(feat, feat), r(feat)] if aux else [None, None])
    return w, heads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reads_cell,aux,bootstrap", [(False, False, True), (True, True, True),
                                                      (True, False, False), (False, True, False)])  # fmt: skip
def test_dni_window_matches_reference(dtype, reads_cell, aux, bootstrap):
    shape = (6, 3, 5, 9)
    w, heads = _dni_inputs(shape, dtype, reads_cell, aux)
    kw = dict(sg_scale=0.3, sg_reads_cell=reads_cell, bootstrap=bootstrap, aux_loss_weight=0.5)
    leaves = [t.clone().requires_grad_() for t in w + heads if t is not None]
    hs, cs, sg_raw = ops.lstm_dni_window(*leaves[:6], *leaves[6:8], *(leaves[8:] or [None, None]), **kw)
    gen = torch.Generator().manual_seed(5)
    grad_hs = torch.randn(hs.shape, generator=gen, dtype=torch.float64).to(dtype)
    got = torch.autograd.grad(hs, leaves, grad_hs)
    r = reference.lstm_dni_window(*w, *heads, grad_hs=grad_hs, **kw)
    assert_close(hs, r.hs, "hs")
    assert_close(sg_raw[:2], r.sg_raw, "sg_raw")
    names = GRAD_NAMES + ("grad_sg_weight", "grad_sg_bias", "grad_aux_weight", "grad_aux_bias")
    expected = [getattr(r, n) for n in names if getattr(r, n) is not None]
    _close_all(got, expected, names)


@pytest.mark.parametrize("windows,steps", [(4, 5), (2, 32)])
def test_oracle_exactness(windows, steps):
    """Boundary gradient = the true ∂L_{≥t}/∂s_t from full BPTT ⇒ Σ_windows of the
    parameter gradients equals full BPTT's and every δ_start is the true gradient.
    Checked for the fused window backward and for the reference's bootstrapped window."""
    batch, inp, hidden = 3, 4, 6
    x, h0, c0, w_ih, w_hh, b = make_window(windows * steps, batch, inp, hidden, seed=2)
    targets = torch.randn(windows * steps, batch, hidden, dtype=torch.float64)
    # Full BPTT over the whole sequence, loss ½‖h_t − y_t‖² at every step.
    params = [t.clone().requires_grad_() for t in (w_ih, w_hh, b)]
    h, c = h0.clone().requires_grad_(), c0.clone().requires_grad_()
    boundary, hs = [], []
    for t in range(windows * steps):
        if t % steps == 0:
            # A fresh node past the previous step's loss: its grad is ∂L_{≥t}/∂s_t only.
            h, c = h + 0, c + 0
            h.retain_grad(), c.retain_grad()
            boundary.append((h, c))
        h, c, _ = reference.lstm_cell(x[t], h, c, *params)
        hs.append(h)
    (0.5 * ((torch.stack(hs) - targets) ** 2).sum()).backward()
    true = [(bh.grad, bc.grad) for bh, bc in boundary] + [(None, None)]
    # Windowed: each window from its start state, bootstrapped with the true gradient.
    sums = {"fused": [0, 0, 0], "reference": [0, 0, 0]}
    heads = [torch.randn(2 * hidden, 2 * hidden, dtype=torch.float64), None]  # overridden
    for k in range(windows):
        win = slice(k * steps, (k + 1) * steps)
        s0 = [t.detach() for t in boundary[k]]
        hs_k, cs_k, gates = ops.lstm_window_forward(x[win], *s0, w_ih, w_hh, b)
        assert_close(hs_k, torch.stack(hs[win]).detach(), f"hs window {k}")
        grad_hs = hs_k - targets[win]
        fused = ops.lstm_window_backward(grad_hs, None, *true[k + 1], x[win], *s0, w_ih, w_hh,
                                         hs_k, cs_k, gates)  # fmt: skip
        last = k == windows - 1
        override = torch.zeros(batch, 2 * hidden, dtype=torch.float64) if last else torch.cat(true[k + 1], -1)
        ref = reference.lstm_dni_window(
            x[win], *s0, w_ih, w_hh, b, *heads, grad_hs=grad_hs, sg_reads_cell=True,
            bootstrap=not last, sg_override=override)  # fmt: skip
        for name, (g_h0, g_c0, *g_params) in (("fused", fused[1:]), ("reference", ref[4:9])):
            assert_close(g_h0, true[k][0], f"{name} δ_start h, window {k}")
            assert_close(g_c0, true[k][1], f"{name} δ_start c, window {k}")
            sums[name] = [a + g for a, g in zip(sums[name], g_params)]
    for name, total in sums.items():
        _close_all(total, [p.grad for p in params], [f"{name} Σ {n}" for n in GRAD_NAMES[3:]])


def test_long_window_float32_matches_float64():
    """T = 64: the float32 kernel's error vs a float64 reference stays within the
    float32 tolerance (no accumulated drift over steps)."""
    w64 = make_window(64, 4, 8, 24, seed=4)
    w32 = [t.float() for t in w64]
    got = ops.lstm_window_forward(*w32)
    expected = reference.lstm_window_forward(*w64)
    grad_hs = torch.randn(64, 4, 24, dtype=torch.float64)
    got_b = ops.lstm_window_backward(grad_hs.float(), None, None, None, *w32[:5], *got)
    exp_b = reference.lstm_window_backward(grad_hs, None, None, None, *w64[:5], *expected)
    for g, e, n in zip((*got, *got_b), (*expected, *exp_b), ("hs", "cs", "gates") + GRAD_NAMES):
        torch.testing.assert_close(g.double(), e, **tol(torch.float32), msg=lambda m: f"{n}: {m}")


# H = 37: the portable gate loops; H = 64: every step mode this CPU has.
HIDDEN_AND_MODES = [(37, "auto")] + [(64, m) for m in STEP_MODES]


@pytest.mark.parametrize("hidden,mode", HIDDEN_AND_MODES)
def test_saturated_gates_float32_match_float64(hidden, mode, monkeypatch):
    """Pre-activations far beyond ±88, where the CPU kernels' vectorised exp clamps its
    argument (csrc/cpu/vec_math.h): gates at exactly 0 and 1, no inf or NaN; in the
    portable gate loops and in the one-pass steps."""
    monkeypatch.setenv("DNI_CPU_LSTM_STEP", mode)
    w64 = list(make_window(5, 3, 8, hidden, seed=5))
    w64[5] = w64[5] * 1000.0
    w32 = [t.float() for t in w64]
    got = ops.lstm_window_forward(*w32)
    expected = reference.lstm_window_forward(*w64)
    assert (w64[5].abs() > 100).float().mean() > 0.2
    grad_hs = torch.randn(5, 3, hidden, dtype=torch.float64)
    got_b = ops.lstm_window_backward(grad_hs.float(), None, None, None, *w32[:5], *got)
    exp_b = reference.lstm_window_backward(grad_hs, None, None, None, *w64[:5], *expected)
    for g, e, n in zip((*got, *got_b), (*expected, *exp_b), ("hs", "cs", "gates") + GRAD_NAMES):
        assert torch.isfinite(g).all(), n
        torch.testing.assert_close(g.double(), e, **tol(torch.float32), msg=lambda m: f"{n}: {m}")


@pytest.mark.parametrize("hidden,mode", HIDDEN_AND_MODES)
def test_nan_input_reaches_outputs(hidden, mode, monkeypatch):
    """A NaN in x comes out as NaN in that batch row's states and gates, as in the
    reference, and nowhere else: the vectorised exp's clamp (csrc/cpu/vec_math.h) lets a
    NaN through instead of turning it into a bound, in the portable gate loops and in the
    one-pass steps."""
    monkeypatch.setenv("DNI_CPU_LSTM_STEP", mode)
    w = [t.float() for t in make_window(3, 4, 8, hidden, seed=7)]
    w[0] = w[0].clone()
    w[0][0, 1, 2] = float("nan")
    got = ops.lstm_window_forward(*w)
    expected = reference.lstm_window_forward(*w)
    for g, e, n in zip(got, expected, ("hs", "cs", "gates")):
        assert g[:, 1].isnan().all(), n
        torch.testing.assert_close(g, e, equal_nan=True, **tol(torch.float32),
                                   msg=lambda m: f"{n}: {m}")


def _opcheck_samples():
    w = make_window(3, 2, 5, 4, dtype=torch.float32, noncontig=True)
    yield "lstm_window_forward", w
    hs, cs, gates = ops.lstm_window_forward(*w)
    g = torch.randn(3, 2, 4)
    yield "lstm_window_backward", (g, None, g[0], None, *w[:5], hs, cs, gates)
    yield "lstm_window_backward", (None, g, None, g[1], *w[:5], hs, cs, gates, False)
    wd, heads = _dni_inputs((3, 2, 5, 4), torch.float32, True, True)
    yield "lstm_dni_window", (*wd, *heads, 0.1, True, True, 0.5)
    wd, heads = _dni_inputs((2, 3, 5, 4), torch.float32, False, False)
    yield "lstm_dni_window", (*wd, *heads, 0.1, False, False, 1.0)
    # H = 64: the CPU's one-pass steps, where it has them.
    w = make_window(2, 5, 3, 64, dtype=torch.float32)
    yield "lstm_window_forward", w
    g = torch.randn(2, 5, 64)
    yield "lstm_window_backward", (g, g, g[0], g[1], *w[:5], *ops.lstm_window_forward(*w))


@pytest.mark.parametrize("i", range(len(list(_opcheck_samples()))))
def test_opcheck(i):
    name, args = list(_opcheck_samples())[i]
    args = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point()
            and name != "lstm_window_backward" else a for a in args]  # fmt: skip
    torch.library.opcheck(getattr(torch.ops.dni, name).default, tuple(args))


@pytest.mark.parametrize("dni", [False, True])
def test_direct_autograd_matches_registered(dni):
    """ops.* runs an op through its direct autograd.Function (ops._register_direct),
    torch.ops.dni.* through torch.library's registration: the same gradients, bit for
    bit (x needs none here, so both skip its product)."""
    w, heads = _dni_inputs((3, 2, 5, 4), torch.float32, True, True)
    kw = dict(sg_scale=0.1, sg_reads_cell=True, bootstrap=True, aux_loss_weight=0.5)
    grads, nodes = [], []
    for direct in (True, False):
        leaves = [w[0]] + [t.clone().requires_grad_() for t in w[1:] + (heads if dni else [])]
        if dni:
            op = ops.lstm_dni_window if direct else torch.ops.dni.lstm_dni_window.default
            hs = op(*leaves, **kw)[0] if direct else op(*leaves, *kw.values())[0]
        else:
            op = ops.lstm_window_forward if direct else torch.ops.dni.lstm_window_forward.default
            hs = op(*leaves)[0]
        nodes.append(type(hs.grad_fn).__name__)
        grads.append(torch.autograd.grad((hs * hs).sum(), leaves[1:]))
    assert nodes[0] != nodes[1], nodes  # two paths, not one taken twice
    for i, (d, r) in enumerate(zip(*grads)):
        assert torch.equal(d, r), f"gradient {i}"


@pytest.mark.parametrize("dni", [False, True])
@pytest.mark.parametrize("direct", [True, False])
def test_double_backward_is_refused(dni, direct):
    """The windows are differentiable once: backward(create_graph=True) raises instead
    of returning gradients whose own gradients would silently miss the kernels."""
    w, heads = _dni_inputs((2, 2, 3, 3), torch.float64, False, False)
    leaves = [t.clone().requires_grad_() for t in w + heads[:2]]
    if dni:
        fn = ops.lstm_dni_window if direct else torch.ops.dni.lstm_dni_window.default
        extra = () if direct else (None, None, 0.1, False, True, 1.0)
        hs = fn(*leaves, *extra)[0]
    else:
        fn = ops.lstm_window_forward if direct else torch.ops.dni.lstm_window_forward.default
        hs = fn(*leaves[:6])[0]
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(hs.pow(2).sum(), leaves[0], create_graph=True)
    torch.autograd.grad(hs.pow(2).sum(), leaves[0])  # a plain backward still works


def test_vmap_over_windows():
    """torch.func.vmap over independent sequences batches the registered op (its
    autograd.Function shortcut steps aside under functorch transforms)."""
    w = make_window(3, 2, 4, 5, dtype=torch.float32)
    xs = torch.randn(6, *w[0].shape, generator=torch.Generator().manual_seed(1))
    got = torch.func.vmap(lambda x: ops.lstm_window_forward(x, *w[1:])[0])(xs)
    expected = torch.stack([reference.lstm_window_forward(x, *w[1:])[0] for x in xs])
    assert_close(got, expected, "hs")


def test_compile_fullgraph():
    """One training step (bootstrapped window, loss, backward) under torch.compile."""
    w, heads = _dni_inputs((4, 3, 5, 6), torch.float32, True, True)
    target = torch.randn(4, 3, 6)

    def step(*leaves):
        hs, _, _ = ops.lstm_dni_window(*leaves, sg_reads_cell=True)
        return ((hs - target) ** 2).sum()

    eager = [t.clone().requires_grad_() for t in w + heads]
    compiled = [t.clone().requires_grad_() for t in w + heads]
    step(*eager).backward()
    torch.compile(step, fullgraph=True)(*compiled).backward()
    _close_all([t.grad for t in compiled], [t.grad for t in eager], [f"grad {i}" for i in range(10)])


BAD_WINDOW = [
    (lambda w: w.update(x=w["x"][0]), "x must be 3-D"),
    (lambda w: w.update(x=w["x"][:0]), "x must hold at least one step"),
    (lambda w: w.update(x=w["x"].to(torch.int32)), "x must be float32 or float64"),
    (lambda w: w.update(h0=w["h0"][:1]), "h0 must have shape"),
    (lambda w: w.update(c0=w["c0"].float()), "c0 must have x's dtype"),
    (lambda w: w.update(w_ih=w["w_ih"][:, :2]), "w_ih must have shape"),
    (lambda w: w.update(w_hh=w["w_hh"].t()), "w_hh must have shape"),
    (lambda w: w.update(bias=w["bias"][:3]), "bias must have shape"),
]


@pytest.mark.parametrize("mutate,message", BAD_WINDOW, ids=[m for _, m in BAD_WINDOW])
def test_bad_input_window(mutate, message):
    w = dict(zip(("x", "h0", "c0", "w_ih", "w_hh", "bias"), make_window(3, 2, 4, 5)))
    originals, before = dict(w), {k: v.clone() for k, v in w.items()}
    mutate(w)
    with pytest.raises(RuntimeError, match=message):
        ops.lstm_window_forward(**w)
    _, heads = _dni_inputs((3, 2, 4, 5), torch.float64, False, False)
    with pytest.raises(RuntimeError, match=message):
        ops.lstm_dni_window(*w.values(), *heads)
    for k, v in originals.items():  # refused before anything was written
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("heads_fn,kw,message", [
    (lambda h: [h[0][:3]] + h[1:], {}, "sg_weight must have shape"),
    (lambda h: h, {"sg_reads_cell": True}, "sg_weight must have shape"),
    (lambda h: h[:3] + [h[1]], {}, "aux_bias given without aux_weight"),
    (lambda h: h, {"sg_scale": float("nan")}, "sg_scale must be finite"),
    (lambda h: h, {"aux_loss_weight": -1.0}, "aux_loss_weight must be >= 0"),
])  # fmt: skip
def test_bad_input_sg(heads_fn, kw, message):
    w, heads = _dni_inputs((3, 2, 4, 5), torch.float64, False, False)
    with pytest.raises(RuntimeError, match=message):
        ops.lstm_dni_window(*w, *heads_fn(heads), **kw)


def test_bad_input_backward():
    w = make_window(3, 2, 4, 5)
    hs, cs, gates = ops.lstm_window_forward(*w)
    g = torch.randn(3, 2, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="grad_hs must have shape"):
        ops.lstm_window_backward(g[:2], None, None, None, *w[:5], hs, cs, gates)
    with pytest.raises(RuntimeError, match="grad_c_end must have shape"):
        ops.lstm_window_backward(g, None, None, g, *w[:5], hs, cs, gates)
    with pytest.raises(RuntimeError, match="gates must be contiguous"):
        ops.lstm_window_backward(g, None, None, None, *w[:5], hs, cs,
                                 gates.transpose(0, 1).contiguous().transpose(0, 1))  # fmt: skip
