"""dni::linear_step_triton (dni_kernels/triton/linear_step.py) vs the reference.

The three paths (single launch, tiled multi-launch, and the tiled kernels reading
products computed by torch.mm, "cublas") are forced in turn; the "auto" rule
and the op's registration are tested separately. Runs in the Triton interpreter on
CPU tensors without a GPU, compiled on CUDA tensors with one (bfloat16 only there).
"""

import itertools

import pytest
import torch

from dni_kernels import ops, reference
from dni_kernels.triton import _common
from dni_kernels.triton.linear_step import linear_step as triton_linear_step
from samples import (LINEAR_STEP_OUTPUTS, check_against_reference, check_non_finite_like_reference,
                     assert_unchanged, check_without_grad_x, check_zero_step_leaves_parameters,
                     inference_copy, make_linear_step_case, mutable_snapshot)  # fmt: skip
from tolerances import tol
from triton_helpers import DEVICES, INTERPRETED, PATHS, cast_case, check, compile_for_sm90, skip_unsupported

# Batch 1, sizes off multiples of 16, several row blocks (70: five programs of the
# single launch, three K steps of the weight GEMM), several output/input tiles (80, 70).
SHAPES = [(1, 5, 3), (7, 33, 17), (16, 40, 24), (70, 20, 12), (9, 70, 80)]
GPU_SHAPES = [(4096, 256, 512), (513, 96, 128)]  # compiled only: too slow interpreted


def _cases(dtypes, activations, shapes):
    axes = list(itertools.product(dtypes, shapes, activations, ["sgd", "grads"]))
    for i, (dtype, shape, act, mode) in enumerate(axes):
        yield pytest.param(
            dict(shape=shape, dtype=dtype, activation=act, mode=mode, num_classes=[None, 1, 10][i % 3],
                 bias=i % 2 == 0, sg_bias=i % 3 != 1, noncontig=i % 4 == 1, chain=i % 5 < 3,
                 chain_classes=[None, 3][i % 2]),
            id=f"{str(dtype)[6:]}-{shape}-{act}-{mode}-{i}",
        )  # fmt: skip


CASES = [*_cases([torch.float32], reference.ACTIVATIONS, SHAPES),
         *_cases([torch.float16, torch.bfloat16], ["relu", "tanh", "sigmoid"], SHAPES[:4])]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", CASES)
def test_matches_reference(cfg, device, path):
    cfg = dict(cfg)
    skip_unsupported(device, cfg["dtype"])
    case = make_linear_step_case(*cfg.pop("shape"), device=device, **cfg)
    check(case, triton_linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS, path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_classes", [None, 10])
def test_without_grad_x(num_classes, device, path):
    """compute_grad_x=False (a first layer): the same step, grad_x an empty tensor
    (the single launch's GRAD_X=False variant; the tiled path skips _grad_x_kernel)."""
    case = make_linear_step_case(9, 20, 12, device=device, num_classes=num_classes,
                                 mode="grads" if num_classes else "sgd",
                                 noncontig=num_classes is None)  # fmt: skip
    check_without_grad_x(case, triton_linear_step, path=path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", GPU_SHAPES)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_large_on_gpu(shape, dtype):
    """Large batches and layers, the "auto" path; chained, conditioned."""
    case = make_linear_step_case(*shape, dtype=dtype, device="cuda", num_classes=10, chain=True,
                                 chain_classes=10, activation="tanh")  # fmt: skip
    check(case, triton_linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act_dtype", [torch.float16, torch.bfloat16])
def test_float32_master_weights(act_dtype, device, path):
    """Half activations with float32 parameters: the update is done in float32 and
    the result is compared with a float64 reference at the half dtype's tolerance."""
    skip_unsupported(device, act_dtype)
    case = make_linear_step_case(16, 40, 24, device=device, num_classes=10, chain=True,
                                 chain_classes=3, activation="tanh")  # fmt: skip
    expected_case = cast_case(case, torch.float64)
    expected = expected_case.call(reference.linear_step)
    case.x, case.prev.h, case.prev.sg_raw = (t.to(act_dtype) for t in (case.x, case.prev.h, case.prev.sg_raw))
    actual = case.call(triton_linear_step, path=path)
    for name, a, e in zip(LINEAR_STEP_OUTPUTS, actual, expected):
        assert a.dtype == act_dtype, name
        torch.testing.assert_close(a.double(), e, **tol(act_dtype), msg=lambda m: f"{name}: {m}")
    for (name, a), e in zip(case.mutable().items(), expected_case.mutable().values()):
        if a is not None:
            assert a.dtype == torch.float32, name
            torch.testing.assert_close(a.double(), e, **tol(act_dtype), msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("path", PATHS)
def test_registered_op_follows_env_path(path, monkeypatch):
    """ops.linear_step(backend="triton") runs the registered kernel; DNI_TRITON_PATH
    forces its path."""
    monkeypatch.setenv("DNI_TRITON_PATH", path)
    device = "cpu" if INTERPRETED else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU and no interpreter")
    case = make_linear_step_case(7, 33, 17, device=device, num_classes=10, chain=True, chain_classes=3)
    check_against_reference(case, ops.linear_step, reference.linear_step, LINEAR_STEP_OUTPUTS,
                            backend="triton")  # fmt: skip


def test_auto_path_rule(monkeypatch):
    monkeypatch.delenv("DNI_TRITON_PATH", raising=False)
    assert _common.choose_path(None, 64, 1 << 20) == "single"
    assert _common.choose_path(None, 65, 10) == "multi"  # row tiles would spill registers
    assert _common.choose_path("single", 128, 10) == "single"  # allowed, spills
    assert _common.choose_path(None, 64, (1 << 20) + 1) == "multi"  # too many atomics
    assert _common.choose_path("multi", 3, 1) == "multi"
    assert _common.choose_path(None, 64, 10, work=1 << 30) == "cublas"  # library products
    assert _common.choose_path(None, 64, 10, work=(1 << 30) - 1) == "single"
    assert _common.choose_path("multi", 3, 1, work=1 << 30) == "multi"
    assert _common.choose_path("cublas", 3, 1) == "cublas"
    # The work is the largest product's: the SG's B·O², the chain's B·I² count too.
    assert _common.largest_product_work(32, 1024, 1024, chained=False) == 1 << 25
    assert _common.largest_product_work(32, 64, 1024, chained=False) == 1 << 25
    assert _common.largest_product_work(32, 1024, 64, chained=True) == 1 << 25
    assert _common.largest_product_work(32, 1024, 64, chained=False) == 1 << 21
    monkeypatch.setenv("DNI_TRITON_PATH", "multi")
    assert _common.choose_path(None, 3, 1) == "multi"
    assert _common.choose_path("single", 3, 1) == "single"  # the argument wins
    with pytest.raises(ValueError, match="path"):
        _common.choose_path("fast", 3, 1)
    with pytest.raises(ValueError, match="at most 128"):
        _common.choose_path("single", 200, 1)


@pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")
@pytest.mark.parametrize(
    "cfg",
    [dict(mode="sgd", num_classes=10, chain=True, chain_classes=3, noncontig=True),
     dict(mode="grads", bias=False, chain=True, activation="sigmoid"),
     dict(mode="sgd", num_classes=1, sg_bias=False, activation="identity")],
)  # fmt: skip
@pytest.mark.parametrize("triton_path", ["auto", "cublas"])  # cublas: products from torch.mm
def test_opcheck(cfg, triton_path, monkeypatch):
    monkeypatch.setenv("DNI_TRITON_PATH", triton_path)
    case = make_linear_step_case(5, 9, 7, **cfg)
    torch.library.opcheck(torch.ops.dni.linear_step_triton.default, case.op_args())
    if case.prev is None:
        case.compute_grad_x = False
        torch.library.opcheck(torch.ops.dni.linear_step_triton.default, case.op_args())


def test_torch_compile_fullgraph():
    device = "cpu" if INTERPRETED else "cuda"
    case = make_linear_step_case(6, 10, 8, device=device, num_classes=4, chain=True, chain_classes=4)
    compiled = torch.compile(ops.linear_step, fullgraph=True)
    check_against_reference(case, compiled, reference.linear_step, LINEAR_STEP_OUTPUTS, backend="triton")


def test_kernels_compile_for_gpu():
    """bfloat16 activations (untestable in the interpreter) with float32 master
    weights; the launchers' largest blocks."""
    tiles = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)
    kernels = {"_linear_step_single_kernel": dict(BLOCK_B=16, BLOCK_O=128, BLOCK_I=32),
               **{k: tiles for k in ("_forward_kernel", "_sg_kernel", "_grad_x_kernel",
                                     "_weight_update_kernel")}}  # fmt: skip
    compile_for_sm90("dni_kernels.triton.linear_step", kernels, act="bf16", param="fp32")
    # The tiled kernels above read their products (GIVEN, the "cublas" path); here with
    # their own tl.dot loops.
    gemm = dict(tiles, GIVEN=False)
    kernels = {k: gemm for k in ("_forward_kernel", "_sg_kernel", "_grad_x_kernel", "_weight_update_kernel")}
    compile_for_sm90("dni_kernels.triton.linear_step", kernels, act="bf16", param="fp32")


# --- bad input: a clear error naming the argument, nothing written -------------------


def _bad_inputs():
    def set_(field, value):
        return lambda c: setattr(c, field, value(c))

    yield "x", set_("x", lambda c: c.x[:, :-1])
    yield "weight", set_("weight", lambda c: c.weight.double())
    yield "sg_table", set_("sg_table", lambda c: c.sg_table[:, :-1])
    yield "lr", set_("lr", lambda c: -0.1)
    yield "activation", set_("activation", lambda c: "gelu")
    yield "prev_h", lambda c: setattr(c.prev, "h", c.prev.h[:-1])
    yield "prev_lr", lambda c: setattr(c.prev, "lr", float("nan"))
    yield "float64", lambda c: vars(c).update(vars(cast_case(c, torch.float64)))
    yield "compute_grad_x", set_("compute_grad_x", lambda c: False)  # with the chain
    yield "x shares memory with weight", set_("x", lambda c: c.weight[:6])
    yield "x shares memory with prev_sg_weight", set_("x", lambda c: c.prev.sg_weight[:6])
    yield "weight was made under torch.inference_mode", set_("weight", inference_copy("weight"))
    if INTERPRETED:  # label values are range-checked on the host for CPU tensors only
        yield "labels", set_("labels", lambda c: torch.full_like(c.labels, 10))  # K = 10
        yield "prev_labels", lambda c: setattr(c.prev, "labels", c.prev.labels - 4)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("arg,corrupt", list(_bad_inputs()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_argument_and_writes_nothing(arg, corrupt, path):
    device = "cpu" if INTERPRETED else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU and no interpreter")
    case = make_linear_step_case(6, 9, 7, device=device, num_classes=10, chain=True, chain_classes=3)
    corrupt(case)
    before = mutable_snapshot(case)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=arg):
        case.call(triton_linear_step, path=path)
    assert_unchanged(case, before, "was modified by a refused call")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_nan_and_zero_step_like_the_reference(activation, path):
    """A NaN in x propagates where the reference's does (relu included); lr = 0 leaves
    every updated tensor bit-identical, even with an inf in x."""
    device = "cpu" if INTERPRETED else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU and no interpreter")
    case = make_linear_step_case(5, 9, 7, device=device, activation=activation, num_classes=10,
                                 chain=True, chain_classes=3)  # fmt: skip
    case.x[0, 1] = float("nan")
    check_non_finite_like_reference(case, triton_linear_step, reference.linear_step,
                                    LINEAR_STEP_OUTPUTS, path=path)  # fmt: skip
    case.x[0, 1] = float("inf")
    case.lr = case.prev.lr = 0.0
    check_zero_step_leaves_parameters(case, triton_linear_step, path=path)


@pytest.mark.skipif(not INTERPRETED, reason="needs CPU tensors in the interpreter")
def test_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    case = make_linear_step_case(2, 3, 4)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        case.call(triton_linear_step)
