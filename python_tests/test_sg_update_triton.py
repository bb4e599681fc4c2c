"""dni::sg_update_triton (dni_kernels/triton/sg_update.py) vs the reference.

The three paths (single launch, tiled, tiled with the product from torch.mm) are
forced in turn. Runs in the Triton interpreter on CPU tensors without a GPU, compiled
on CUDA tensors with one.
"""

import itertools

import pytest
import torch

from dni_kernels import ops, reference
from dni_kernels.triton.sg_update import sg_update as triton_sg_update
from samples import assert_unchanged, check_against_reference, make_sg_update_case, mutable_snapshot
from triton_helpers import DEVICES, INTERPRETED, PATHS, cast_case, check, compile_for_sm90, skip_unsupported

# Batch 1, sizes off multiples of 16, several row blocks / K steps (70), several
# feature tiles (80).
SHAPES = [(1, 3), (7, 17), (16, 40), (70, 12), (9, 80)]


def _cases():
    dtypes = [torch.float32, torch.float16, torch.bfloat16]
    axes = list(itertools.product(dtypes, SHAPES, ["sgd", "grads"], [None, 1, 10]))
    for i, (dtype, shape, mode, k) in enumerate(axes):
        yield pytest.param(
            dict(shape=shape, dtype=dtype, mode=mode, num_classes=k, sg_bias=i % 3 != 0, noncontig=i % 2 == 1),
            id=f"{str(dtype)[6:]}-{shape}-{mode}-K{k}-{i}",
        )  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", list(_cases()))
def test_matches_reference(cfg, device, path):
    cfg = dict(cfg)
    skip_unsupported(device, cfg["dtype"])
    case = make_sg_update_case(*cfg.pop("shape"), device=device, **cfg)
    check(case, triton_sg_update, reference.sg_update, ("loss",), path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_duplicate_labels_accumulate(device, path):
    """Every row hits one class row: the atomics (single) and the owned columns
    (tiled) must add all of them."""
    case = make_sg_update_case(40, 6, device=device, num_classes=2)
    case.state.labels.fill_(1)
    check(case, triton_sg_update, reference.sg_update, ("loss",), path=path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4096, 256), (300, 128)])
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_large_on_gpu(shape, dtype):
    case = make_sg_update_case(*shape, dtype=dtype, device="cuda", num_classes=10)
    check(case, triton_sg_update, reference.sg_update, ("loss",))


@pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")
@pytest.mark.parametrize("cfg", [dict(num_classes=10, mode="sgd", noncontig=True), dict(num_classes=None, mode="grads")])
@pytest.mark.parametrize("triton_path", ["auto", "cublas"])  # cublas: products from torch.mm
def test_opcheck(cfg, triton_path, monkeypatch):
    monkeypatch.setenv("DNI_TRITON_PATH", triton_path)
    case = make_sg_update_case(5, 7, **cfg)
    torch.library.opcheck(torch.ops.dni.sg_update_triton.default, case.op_args())


def test_torch_compile_fullgraph():
    device = "cpu" if INTERPRETED else "cuda"
    case = make_sg_update_case(6, 8, device=device, num_classes=3)
    compiled = torch.compile(ops.sg_update, fullgraph=True)
    check_against_reference(case, compiled, reference.sg_update, ("loss",), backend="triton")


def test_kernels_compile_for_gpu():
    """float16 activations and parameters; the launchers' largest blocks."""
    kernels = {"_sg_update_single_kernel": dict(BLOCK_B=16, BLOCK_F=32),
               "sg_regression_gemm_kernel": dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32)}  # fmt: skip
    compile_for_sm90("dni_kernels.triton.sg_update", kernels, act="fp16", param="fp16")
    # The regression kernel with its own tl.dot loop (above: reading a given eᵀh).
    kernels = {"sg_regression_gemm_kernel": dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, GIVEN=False)}
    compile_for_sm90("dni_kernels.triton.sg_update", kernels, act="fp16", param="fp16")


def _bad_inputs():
    def on_state(field, value):
        return lambda c: setattr(c.state, field, value(c.state))

    yield "target", lambda c: setattr(c, "target", c.target[:, :-1])
    yield "sg_raw", on_state("sg_raw", lambda s: s.sg_raw.double())
    yield "sg_weight", on_state("sg_weight", lambda s: s.sg_weight[:-1])
    yield "sg_table", on_state("sg_table", lambda s: s.sg_table[:, :-1])
    yield "lr", on_state("lr", lambda s: -1.0)
    yield "float64", lambda c: vars(c).update(vars(cast_case(c, torch.float64)))
    yield "h shares memory with sg_weight", on_state("h", lambda s: s.sg_weight[:6])
    if INTERPRETED:  # label values are range-checked on the host for CPU tensors only
        yield "labels", on_state("labels", lambda s: s.labels + 10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("arg,corrupt", list(_bad_inputs()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_argument_and_writes_nothing(arg, corrupt, path):
    device = "cpu" if INTERPRETED else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU and no interpreter")
    case = make_sg_update_case(6, 7, device=device, num_classes=10)
    corrupt(case)
    before = mutable_snapshot(case)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=arg):
        case.call(triton_sg_update, path=path)
    assert_unchanged(case, before, "was modified by a refused call")
