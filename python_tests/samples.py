"""Sample inputs shared by the tests of every backend (CPU C++, CUDA C++, Triton).

A case holds every tensor an op reads or updates; `clone()` gives an independent
copy (keeping non-contiguous strides) so the reference and a kernel run on equal
inputs and their updated weights can be compared afterwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from dni_kernels import reference
from dni_kernels.reference import PrevSG


def clone_keep_strides(t: Optional[Tensor]) -> Optional[Tensor]:
    if t is None:
        return None
    out = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device=t.device)
    return out.copy_(t)


def _param(gen, *shape, scale, dtype, device):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype).to(device)


def _input(gen, rows, cols, *, dtype, device, noncontig):
    """[rows, cols]; with `noncontig`, a strided view (every other column)."""
    if noncontig:
        base = _param(gen, rows, 2 * cols, scale=1.0, dtype=dtype, device=device)
        return base[:, ::2]
    return _param(gen, rows, cols, scale=1.0, dtype=dtype, device=device)


@dataclass
class SgState:
    """An SG model's parameters, optional .grad buffers, and the step it regresses."""

    h: Tensor
    sg_raw: Tensor
    sg_weight: Tensor
    sg_bias: Optional[Tensor]
    sg_table: Optional[Tensor]
    labels: Optional[Tensor]
    lr: float
    sg_weight_grad: Optional[Tensor] = None
    sg_bias_grad: Optional[Tensor] = None
    sg_table_grad: Optional[Tensor] = None

    def as_prev(self) -> PrevSG:
        return PrevSG(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def params(self) -> dict:
        names = ["sg_weight", "sg_bias", "sg_table", "sg_weight_grad", "sg_bias_grad", "sg_table_grad"]
        return {n: getattr(self, n) for n in names}


def make_sg_state(gen, batch, feat, *, dtype, device, num_classes, sg_bias, mode, noncontig=False):
    def p(*shape, scale):
        return _param(gen, *shape, scale=scale, dtype=dtype, device=device)

    grads = mode == "grads"
    table = p(num_classes, feat, scale=0.1) if num_classes else None
    state = SgState(
        h=_input(gen, batch, feat, dtype=dtype, device=device, noncontig=noncontig),
        sg_raw=_input(gen, batch, feat, dtype=dtype, device=device, noncontig=noncontig),
        sg_weight=p(feat, feat, scale=0.1),
        sg_bias=p(feat, scale=0.1) if sg_bias else None,
        sg_table=table,
        labels=(torch.randint(0, num_classes, (batch,), generator=gen).to(device) if num_classes else None),
        lr=0.05,
    )
    if grads:
        state.sg_weight_grad = p(feat, feat, scale=0.01)
        state.sg_bias_grad = p(feat, scale=0.01) if sg_bias else None
        state.sg_table_grad = p(num_classes, feat, scale=0.01) if num_classes else None
    return state


@dataclass
class LinearStepCase:
    x: Tensor
    weight: Tensor
    bias: Optional[Tensor]
    sg_weight: Tensor
    sg_bias: Optional[Tensor]
    sg_table: Optional[Tensor]
    labels: Optional[Tensor]
    activation: str
    sg_scale: float
    lr: float
    weight_grad: Optional[Tensor] = None
    bias_grad: Optional[Tensor] = None
    prev: Optional[SgState] = None
    compute_grad_x: bool = True

    def clone(self) -> "LinearStepCase":
        def c(v):
            if isinstance(v, Tensor):
                return clone_keep_strides(v)
            if isinstance(v, SgState):
                return SgState(**{f.name: c(getattr(v, f.name)) for f in dataclasses.fields(v)})
            return v

        return LinearStepCase(**{f.name: c(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def call(self, fn, **extra):
        """Run `fn` (reference.linear_step, ops.linear_step, or a backend's launcher)."""
        return fn(
            self.x, self.weight, self.bias, self.sg_weight, self.sg_bias, self.sg_table, self.labels,
            activation=self.activation, sg_scale=self.sg_scale, lr=self.lr,
            weight_grad=self.weight_grad, bias_grad=self.bias_grad,
            prev=self.prev.as_prev() if self.prev is not None else None,
            compute_grad_x=self.compute_grad_x, **extra,
        )  # fmt: skip

    def op_args(self) -> tuple:
        """Positional arguments in the schema's order (for opcheck and torch.ops calls)."""
        p = self.prev.as_prev() if self.prev is not None else PrevSG(None, None, None)
        return (
            self.x, self.weight, self.bias, self.weight_grad, self.bias_grad,
            self.sg_weight, self.sg_bias, self.sg_table, self.labels,
            self.activation, self.sg_scale, self.lr,
            p.h, p.sg_raw, p.labels, p.sg_weight, p.sg_bias, p.sg_table,
            p.sg_weight_grad, p.sg_bias_grad, p.sg_table_grad, p.lr, self.compute_grad_x,
        )  # fmt: skip

    def mutable(self) -> dict:
        """Every tensor the op may update, by name (None where absent)."""
        out = {"weight": self.weight, "bias": self.bias,
               "weight_grad": self.weight_grad, "bias_grad": self.bias_grad}  # fmt: skip
        if self.prev is not None:
            out.update({"prev_" + k: v for k, v in self.prev.params().items()})
        return out


def make_linear_step_case(
    batch, in_features, out_features, *, dtype=torch.float32, device="cpu", activation="relu",
    bias=True, sg_bias=True, num_classes=None, mode="sgd", noncontig=False, chain=False,
    chain_classes=None, sg_scale=0.7, lr=0.05, seed=0,
) -> LinearStepCase:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)

    def p(*shape, scale):
        return _param(gen, *shape, scale=scale, dtype=dtype, device=device)

    case = LinearStepCase(
        x=_input(gen, batch, in_features, dtype=dtype, device=device, noncontig=noncontig),
        weight=p(out_features, in_features, scale=in_features**-0.5),
        bias=p(out_features, scale=0.1) if bias else None,
        sg_weight=p(out_features, out_features, scale=0.1),
        sg_bias=p(out_features, scale=0.1) if sg_bias else None,
        sg_table=p(num_classes, out_features, scale=0.1) if num_classes else None,
        labels=(torch.randint(0, num_classes, (batch,), generator=gen).to(device) if num_classes else None),
        activation=activation,
        sg_scale=sg_scale,
        lr=lr,
    )
    if mode == "grads":
        case.weight_grad = p(out_features, in_features, scale=0.01)
        case.bias_grad = p(out_features, scale=0.01) if bias else None
    if chain:
        case.prev = make_sg_state(gen, batch, in_features, dtype=dtype, device=device,
                                  num_classes=chain_classes, sg_bias=sg_bias, mode=mode,
                                  noncontig=noncontig)  # fmt: skip
    return case


@dataclass
class SgUpdateCase:
    state: SgState
    target: Tensor

    def clone(self) -> "SgUpdateCase":
        s = self.state
        return SgUpdateCase(
            SgState(**{f.name: (clone_keep_strides(v) if isinstance(v := getattr(s, f.name), Tensor) else v)
                       for f in dataclasses.fields(s)}),
            clone_keep_strides(self.target),
        )  # fmt: skip

    def call(self, fn, **extra):
        s = self.state
        return fn(
            s.h, s.sg_raw, self.target, s.sg_weight, s.sg_bias, s.sg_table, s.labels, lr=s.lr,
            sg_weight_grad=s.sg_weight_grad, sg_bias_grad=s.sg_bias_grad,
            sg_table_grad=s.sg_table_grad, **extra,
        )  # fmt: skip

    def op_args(self) -> tuple:
        s = self.state
        return (s.h, s.sg_raw, self.target, s.labels, s.sg_weight, s.sg_bias, s.sg_table,
                s.sg_weight_grad, s.sg_bias_grad, s.sg_table_grad, s.lr)  # fmt: skip

    def mutable(self) -> dict:
        return self.state.params()


def make_sg_update_case(batch, feat, *, dtype=torch.float32, device="cpu", num_classes=None,
                        sg_bias=True, mode="sgd", noncontig=False, seed=0) -> SgUpdateCase:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    state = make_sg_state(gen, batch, feat, dtype=dtype, device=device, num_classes=num_classes,
                          sg_bias=sg_bias, mode=mode, noncontig=noncontig)  # fmt: skip
    target = _input(gen, batch, feat, dtype=dtype, device=device, noncontig=noncontig)
    return SgUpdateCase(state, target)


LINEAR_STEP_OUTPUTS = ("h", "sg_raw", "grad_x", "prev_loss")


def inference_copy(field: str):
    """For the bad-input tests: case -> a copy of its `field` made under
    torch.inference_mode (which may be updated in place only inside it)."""

    def copy(case):
        with torch.inference_mode():
            return getattr(case, field).clone()

    return copy


def check_against_reference(case, fn, reference_fn, output_names, **extra):
    """Run `reference_fn` and `fn` on independent clones of `case`; compare every
    output and every updated tensor (with the tolerance table). Returns fn's outputs."""
    from tolerances import assert_close

    expected_case, actual_case = case.clone(), case.clone()
    expected = expected_case.call(reference_fn)
    actual = actual_case.call(fn, **extra)
    if isinstance(expected, Tensor):
        expected, actual = (expected,), (actual,)
    for name, a, e in zip(output_names, actual, expected):
        assert_close(a, e, name)
    for (name, a), e in zip(actual_case.mutable().items(), expected_case.mutable().values()):
        assert_close(a, e, name)
    return actual


def mutable_snapshot(case) -> dict:
    """Copies of every tensor the case's op may update, by name (see assert_unchanged)."""
    return {k: v.clone() for k, v in case.mutable().items() if v is not None}


def assert_unchanged(case, snapshot: dict, why: str) -> None:
    """Every tensor in `snapshot` (mutable_snapshot) still holds the same bits."""
    for name, old in snapshot.items():
        assert torch.equal(case.mutable()[name], old), f"{name} {why}"


def check_non_finite_like_reference(case, fn, reference_fn, output_names, **extra):
    """For a case whose inputs hold NaN or inf: run `reference_fn` and `fn` on clones;
    the same elements of every output and every updated tensor are NaN, and the same
    are infinite."""
    expected_case, actual_case = case.clone(), case.clone()
    expected = expected_case.call(reference_fn)
    actual = actual_case.call(fn, **extra)
    named = list(zip(output_names, actual, expected))
    named += [(n, a, e) for (n, a), e in zip(actual_case.mutable().items(),
                                           expected_case.mutable().values()) if a is not None]  # fmt: skip
    for name, a, e in named:
        assert torch.equal(a.isnan(), e.isnan()), f"{name}: NaN where the reference has none, or not"
        assert torch.equal(a.isinf(), e.isinf()), f"{name}: inf where the reference has none, or not"


def check_zero_step_leaves_parameters(case, fn, **extra):
    """`case` has lr = 0 (and prev lr = 0) and an inf in x: `fn` leaves every updated
    tensor bit-identical in "sgd" mode, as the reference does."""
    before = mutable_snapshot(case)
    case = case.clone()
    case.call(fn, **extra)
    assert_unchanged(case, before, "changed under a zero step")


def check_without_grad_x(case, fn, **extra):
    """compute_grad_x=False (a first layer; `case` not chained): grad_x is an empty
    tensor, and h, sg_raw, prev_loss and every updated tensor match both the
    reference's and `fn`'s own compute_grad_x=True call. Float32/float64 cases."""
    from tolerances import assert_close

    ref_case, full_case, skip_case = (dataclasses.replace(case.clone(), compute_grad_x=flag)
                                      for flag in (False, True, False))  # fmt: skip
    expected = ref_case.call(reference.linear_step)
    full = full_case.call(fn, **extra)
    actual = skip_case.call(fn, **extra)
    grad_x = actual[2]
    assert grad_x.shape == (0,) and grad_x.dtype == case.x.dtype and grad_x.device == case.x.device
    for other, other_case in ((expected, ref_case), (full, full_case)):
        for name, a, e in zip(LINEAR_STEP_OUTPUTS, actual, other):
            if name != "grad_x":
                assert_close(a, e, name)
        for (name, a), e in zip(skip_case.mutable().items(), other_case.mutable().values()):
            assert_close(a, e, name)
