"""dni::linear_step on the CPU kernel vs dni_kernels/reference.py.

linear_step is a training step (it updates weights in place or accumulates into
.grad, like torch's fused optimizers) and registers no autograd, so there is no
gradcheck; the float64 oracle tests below check its gradients against autograd.
"""

import itertools

import pytest
import torch

import cpu_gemm
from dni_kernels import ops, reference
from samples import (LINEAR_STEP_OUTPUTS, check_against_reference, check_non_finite_like_reference,
                     assert_unchanged, check_without_grad_x, check_zero_step_leaves_parameters,
                     inference_copy, make_linear_step_case, mutable_snapshot)  # fmt: skip
from tolerances import assert_close

SHAPES = [(1, 5, 3), (7, 33, 17), (32, 64, 48), (3, 20, 20)]
DTYPES = [torch.float32, torch.float64]
CLASSES = [None, 1, 10]


def _cases():
    # Full product of the axes that change the kernel's code path; bias, contiguity
    # and the chain rotate through them so each value is covered many times.
    axes = list(itertools.product(DTYPES, SHAPES, reference.ACTIVATIONS, ["sgd", "grads"], CLASSES))
    for i, (dtype, shape, act, mode, k) in enumerate(axes):
        yield pytest.param(
            dict(shape=shape, dtype=dtype, activation=act, mode=mode, num_classes=k,
                 bias=i % 2 == 0, sg_bias=i % 3 != 0, noncontig=i % 4 == 1, chain=i % 5 < 2,
                 chain_classes=[None, 3][i % 2]),
            id=f"{str(dtype)[6:]}-{shape}-{act}-{mode}-K{k}-{i}",
        )  # fmt: skip


@pytest.mark.parametrize("cfg", list(_cases()))
def test_matches_reference(cfg):
    cfg = dict(cfg)
    case = make_linear_step_case(*cfg.pop("shape"), **cfg)
    check_against_reference(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["sgd", "grads"])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_without_grad_x(num_classes, mode, dtype):
    """compute_grad_x=False (a first layer): the same step, grad_x an empty tensor."""
    case = make_linear_step_case(7, 33, 17, dtype=dtype, mode=mode, num_classes=num_classes,
                                 activation="tanh", noncontig=num_classes is None)  # fmt: skip
    check_without_grad_x(case, ops.linear_step)


@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_zero_initialised_sg(mode):
    """The paper's zero-initialised SG: ĝ = 0, so the step leaves the layer as it is."""
    case = make_linear_step_case(8, 12, 10, mode=mode, num_classes=4, dtype=torch.float64)
    for t in (case.sg_weight, case.sg_bias, case.sg_table):
        t.zero_()
    before = case.clone()
    h, sg_raw, grad_x, _ = case.call(ops.linear_step)
    assert torch.count_nonzero(sg_raw) == 0 and torch.count_nonzero(grad_x) == 0
    for (name, a), b in zip(case.mutable().items(), before.mutable().values()):
        assert_close(a, b, name)


def _quadratic_loss_case(batch, in_f, out_f, activation, num_classes, seed=0):
    """A loss whose exact ∂L/∂h is a linear SG: L = Σ_r ½ h_r M h_rᵀ + (c + C[y_r])·h_r
    with M symmetric gives ∂L/∂h = h M + c + C[y], i.e. A = M, a = c, table = C."""
    case = make_linear_step_case(batch, in_f, out_f, dtype=torch.float64, activation=activation,
                                 num_classes=num_classes, sg_scale=1.0, lr=0.1, seed=seed)  # fmt: skip
    case.sg_weight = (case.sg_weight + case.sg_weight.t()) / 2

    def loss_fn(h):
        quad = 0.5 * ((h @ case.sg_weight) * h).sum()
        lin = (h * case.sg_bias).sum()
        if case.sg_table is not None:
            lin = lin + (h * case.sg_table[case.labels]).sum()
        return quad + lin

    return case, loss_fn


def _backprop_sgd(case, loss_fn):
    x = case.x.clone().requires_grad_()
    w = case.weight.clone().requires_grad_()
    b = case.bias.clone().requires_grad_()
    h = reference.activation_forward(x @ w.t() + b, case.activation)
    loss_fn(h).backward()
    return w.detach() - case.lr * w.grad, b.detach() - case.lr * b.grad, x.grad


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("num_classes", [None, 5])
def test_oracle_fused_equals_backprop(activation, num_classes):
    """With an SG that is exactly ∂L/∂h, one fused step is one SGD step of backprop,
    and grad_x is autograd's ∂L/∂x (the target the layer below regresses)."""
    case, loss_fn = _quadratic_loss_case(6, 9, 7, activation, num_classes)
    w_new, b_new, grad_x_true = _backprop_sgd(case, loss_fn)
    _, _, grad_x, _ = case.call(ops.linear_step)
    assert_close(grad_x, grad_x_true, "grad_x")
    assert_close(case.weight, w_new, "weight")
    assert_close(case.bias, b_new, "bias")


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
def test_oracle_reference_override_equals_backprop(activation):
    """The reference's test-only `sg_override` feeds an exact δ in place of ĝ."""
    case = make_linear_step_case(5, 8, 6, dtype=torch.float64, activation=activation, lr=0.1)
    target = torch.randn(5, 6, dtype=torch.float64)

    def loss_fn(h):
        return 0.5 * ((h - target) ** 2).sum()

    w_new, b_new, grad_x_true = _backprop_sgd(case, loss_fn)
    z = case.x @ case.weight.t() + case.bias
    delta = reference.activation_forward(z, activation) - target  # ∂L/∂h
    _, _, grad_x, _ = case.call(reference.linear_step, sg_override=delta)
    assert_close(grad_x, grad_x_true, "grad_x")
    assert_close(case.weight, w_new, "weight")
    assert_close(case.bias, b_new, "bias")


@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_chain_trains_a_stack(mode):
    """A 3-layer stack with one call per layer: layer i's call regresses layer i−1's
    SG toward its own grad_x. Several steps, fused vs reference, weights compared."""
    dims = [10, 13, 11, 9]
    cases = [make_linear_step_case(4, dims[i], dims[i + 1], dtype=torch.float64, mode=mode,
                                   num_classes=3, activation="tanh", seed=i) for i in range(3)]  # fmt: skip
    labels = cases[0].labels
    for c in cases:
        c.labels = labels
    stacks = {"ref": [c.clone() for c in cases], "fused": [c.clone() for c in cases]}
    fns = {"ref": reference.linear_step, "fused": ops.linear_step}
    x = cases[0].x
    for name, stack in stacks.items():
        for _ in range(3):
            inp, prev = x, None
            for c in stack:
                h, sg_raw, _, _ = fns[name](
                    inp, c.weight, c.bias, c.sg_weight, c.sg_bias, c.sg_table, labels,
                    activation=c.activation, sg_scale=c.sg_scale, lr=c.lr, weight_grad=c.weight_grad,
                    bias_grad=c.bias_grad, prev=prev)  # fmt: skip
                prev = reference.PrevSG(h, sg_raw, c.sg_weight, c.sg_bias, c.sg_table, labels, lr=0.05)
                inp = h
    for ref_c, fused_c in zip(stacks["ref"], stacks["fused"]):
        for name in ("weight", "bias", "weight_grad", "sg_weight", "sg_bias", "sg_table"):
            assert_close(getattr(fused_c, name), getattr(ref_c, name), name)


@pytest.mark.parametrize(
    "cfg",
    [dict(mode="sgd", num_classes=10, chain=True, chain_classes=3, noncontig=True),
     dict(mode="grads", num_classes=None, bias=False, chain=True, activation="sigmoid"),
     dict(mode="sgd", num_classes=1, sg_bias=False, activation="identity")],
)  # fmt: skip
def test_opcheck(cfg):
    case = make_linear_step_case(5, 9, 7, **cfg)
    torch.library.opcheck(torch.ops.dni.linear_step.default, case.op_args())
    if case.prev is None:
        case.compute_grad_x = False
        torch.library.opcheck(torch.ops.dni.linear_step.default, case.op_args())


def test_torch_compile_fullgraph():
    case = make_linear_step_case(6, 10, 8, mode="sgd", num_classes=4, chain=True, chain_classes=4)
    compiled = torch.compile(ops.linear_step, fullgraph=True)
    check_against_reference(case, compiled, reference.linear_step, LINEAR_STEP_OUTPUTS)


# --- bad input: a clear error naming the argument, nothing written -------------------


def _bad_inputs():
    def set_(field, value):
        return lambda c: setattr(c, field, value(c))

    nan = float("nan")
    yield "x", set_("x", lambda c: c.x[:, :-1])
    yield "weight", set_("weight", lambda c: c.weight.double())
    yield "weight", set_("weight", lambda c: c.weight.t().contiguous().t())  # non-contiguous
    yield "bias", set_("bias", lambda c: c.bias[:-1])
    yield "sg_weight", set_("sg_weight", lambda c: c.sg_weight[:, :-1])
    yield "labels", set_("labels", lambda c: torch.full_like(c.labels, 10))  # K = 10
    yield "labels", set_("labels", lambda c: c.labels - 11)
    yield "labels", set_("labels", lambda c: c.labels.int())
    yield "lr", set_("lr", lambda c: -0.1)
    yield "lr", set_("lr", lambda c: nan)
    yield "sg_scale", set_("sg_scale", lambda c: nan)
    yield "activation", set_("activation", lambda c: "gelu")
    yield "bias_grad", set_("bias_grad", lambda c: None)
    yield "prev_h", lambda c: setattr(c.prev, "h", c.prev.h[:-1])
    yield "prev_labels", lambda c: setattr(c.prev, "labels", c.prev.labels + 3)
    yield "prev_lr", lambda c: setattr(c.prev, "lr", -1.0)
    yield "compute_grad_x", set_("compute_grad_x", lambda c: False)  # with the chain
    # A read-only input sharing memory with an updated tensor (its result would depend
    # on the kernel's write order).
    yield "x shares memory with weight", set_("x", lambda c: c.weight[:6])
    yield "x shares memory with prev_sg_weight", set_("x", lambda c: c.prev.sg_weight[:6])
    yield "prev_h shares memory with weight", lambda c: setattr(c.prev, "h", c.weight[:6])
    yield "weight was made under torch.inference_mode", set_("weight", inference_copy("weight"))


@pytest.mark.parametrize("arg,corrupt", list(_bad_inputs()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_argument_and_writes_nothing(arg, corrupt):
    mode = "grads" if arg == "bias_grad" else "sgd"
    case = make_linear_step_case(6, 9, 7, num_classes=10, chain=True, chain_classes=3, mode=mode)
    corrupt(case)
    before = mutable_snapshot(case)
    with pytest.raises((RuntimeError, ValueError), match=arg):
        case.call(ops.linear_step)
    assert_unchanged(case, before, "was modified by a refused call")


@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_empty_batch_matches_reference(mode):
    """B = 0: empty outputs, a zero chain loss, every updated tensor unchanged."""
    case = make_linear_step_case(0, 9, 7, num_classes=3, chain=True, chain_classes=3, mode=mode)
    before = mutable_snapshot(case)
    check_against_reference(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)
    h, _, grad_x, loss = case.call(ops.linear_step)
    assert h.shape == (0, 7) and grad_x.shape == (0, 9) and loss.item() == 0
    assert_unchanged(case, before, "changed with an empty batch")


def test_strided_read_beside_an_updated_tensor_is_accepted():
    """x and bias carved from one buffer, x's rows interleaved with bias's elements but
    sharing none of them: accepted, and the same step as on separate tensors."""
    case = make_linear_step_case(4, 6, 5)
    buf = torch.empty(4, 11)
    buf[:, :6] = case.x
    buf[0, 6:] = case.bias
    carved = case.clone()
    carved.x, carved.bias = buf[:, :6], buf[0, 6:]
    expected_case = case.clone()
    expected = expected_case.call(reference.linear_step)
    actual = carved.call(ops.linear_step)
    for name, a, e in zip(LINEAR_STEP_OUTPUTS, actual, expected):
        assert_close(a, e, name)
    assert_close(carved.bias, expected_case.bias, "bias")
    assert_close(carved.weight, expected_case.weight, "weight")


@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_no_weight_sized_temporary(mode):
    """The update is fused into the weight-gradient GEMM: no [O, I] (or [O, O] for the
    chained SG) buffer is allocated. The reference, which materialises dW, shows the
    profiler does see such an allocation."""
    from torch.profiler import ProfilerActivity, profile

    batch, in_f, out_f = 4, 300, 200
    weight_bytes = out_f * in_f * 4

    def peak_allocation(fn):
        case = make_linear_step_case(batch, in_f, out_f, mode=mode, chain=True)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            case.call(fn)
        return max(e.cpu_memory_usage for e in prof.events())

    assert peak_allocation(reference.linear_step) >= weight_bytes
    assert peak_allocation(ops.linear_step) < weight_bytes // 4


# Large enough that dense_linear sends the float32 products to oneDNN (csrc/dense_linear.cpp).
ONEDNN_SHAPE = (64, 600, 520)


@pytest.mark.parametrize("gemm,mkldnn", cpu_gemm.CHOICES, ids=cpu_gemm.CHOICE_IDS)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
def test_large_layer_onednn_and_blas_paths(activation, gemm, mkldnn, monkeypatch):
    """Products big enough for oneDNN, under each $DNI_CPU_GEMM and with oneDNN switched
    off by the user (torch.backends.mkldnn), against the reference; the profiler shows
    which library ran."""
    from torch.profiler import ProfilerActivity, profile

    monkeypatch.setenv("DNI_CPU_GEMM", gemm)
    case = make_linear_step_case(*ONEDNN_SHAPE, activation=activation, num_classes=10, chain=True,
                                 noncontig=activation == "tanh")  # fmt: skip
    with torch.backends.mkldnn.flags(enabled=mkldnn), profile(activities=[ProfilerActivity.CPU]) as prof:
        check_against_reference(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)
    ran_onednn = any(e.name == "mkldnn::_linear_pointwise" for e in prof.events())
    assert ran_onednn == cpu_gemm.runs_onednn(gemm, mkldnn)


def test_bad_cpu_gemm_choice_is_refused_before_writing(monkeypatch):
    """$DNI_CPU_GEMM is read at the op's first product, whatever its size: a bad value
    raises there, before the weights are updated."""
    monkeypatch.setenv("DNI_CPU_GEMM", "mkl")
    case = make_linear_step_case(6, 9, 7, num_classes=10, chain=True, chain_classes=3)
    before = mutable_snapshot(case)
    with pytest.raises(RuntimeError, match="DNI_CPU_GEMM must be auto, onednn or blas, got 'mkl'"):
        case.call(ops.linear_step)
    assert_unchanged(case, before, "was modified by a refused call")


@pytest.mark.parametrize("shape,gemm", [((5, 9, 7), "auto"), (ONEDNN_SHAPE, "onednn"),
                                        (ONEDNN_SHAPE, "blas")], ids=["small", "onednn", "blas"])  # fmt: skip
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
def test_nan_propagates_like_the_reference(activation, shape, gemm, monkeypatch):
    """A NaN in x reaches h, ĝ, grad_x and every update where the reference's does;
    relu included (oneDNN's fused relu, and `z > 0 ? z : 0`, had mapped it to 0), with
    the large products on either library."""
    monkeypatch.setenv("DNI_CPU_GEMM", gemm)
    case = make_linear_step_case(*shape, activation=activation, num_classes=10, chain=True)
    case.x[0, 1] = float("nan")
    check_non_finite_like_reference(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)


@pytest.mark.parametrize("fn", [reference.linear_step, ops.linear_step], ids=["reference", "fused"])
def test_zero_step_leaves_parameters_untouched(fn):
    """lr = 0 (and the chain's lr = 0) is a frozen layer and SG: every updated tensor
    stays bit-identical, even with an inf in x (the biases had become NaN)."""
    case = make_linear_step_case(5, 9, 7, activation="identity", num_classes=10, chain=True,
                                 chain_classes=3, lr=0.0)  # fmt: skip
    case.prev.lr = 0.0
    case.x[0, 1] = float("inf")
    check_zero_step_leaves_parameters(case, fn)


_PEAK_RSS_SCRIPT = """
import sys, torch
from dni_kernels import ops, reference


def status(field):  # bytes
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) * 1024


n, batch = 2048, 64
step = ops.linear_step if sys.argv[1] == "fused" else reference.linear_step
small = [torch.randn(64, 64) for _ in range(3)]
step(small[0], small[1], None, small[2], None, lr=1e-6)  # load the libraries
x, w, a = torch.randn(batch, n), torch.randn(n, n).mul_(0.01), torch.randn(n, n).mul_(1e-3)
b, ab = torch.zeros(n), torch.zeros(n)
open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from here
before = status("VmRSS:")
step(x, w, b, a, ab, activation="relu", lr=1e-6)
print(status("VmHWM:") - before)
"""


@pytest.mark.parametrize("gemm", ["onednn", "blas"])
def test_no_weight_sized_temporary_in_large_products(gemm):
    """oneDNN's and BLAS's own buffers are invisible to torch's profiler, so measure the
    process's peak memory instead: the fused step at B=64, I=O=2048 grows it by less
    than one [O, I] weight (16 MiB) with either library; the reference, which
    materialises dW, by more."""
    import os
    import subprocess
    import sys

    # A fixed mmap threshold makes every large buffer fresh pages that count in the
    # peak; glibc's adaptive one may instead recycle resident heap that hides them.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", DNI_CPU_GEMM=gemm)

    def growth(which):
        out = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, which], check=True,
                             capture_output=True, text=True, env=env).stdout  # fmt: skip
        return int(out.split()[-1])

    weight_bytes = 2048 * 2048 * 4
    assert growth("reference") >= weight_bytes
    assert growth("fused") < weight_bytes


def test_accepts_parameters_that_require_grad():
    """Like optimizer.step(), the op runs under no_grad: nn.Parameters work directly."""
    case = make_linear_step_case(4, 6, 5, dtype=torch.float64)
    expected = case.clone()
    expected_out = expected.call(reference.linear_step)
    case.weight = torch.nn.Parameter(case.weight)
    case.bias = torch.nn.Parameter(case.bias)
    out = case.call(ops.linear_step)
    assert not any(t.requires_grad for t in out)
    assert_close(case.weight.detach(), expected.weight, "weight")
    assert_close(out[2], expected_out[2], "grad_x")
