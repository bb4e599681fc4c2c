"""dni::sg_update (the SG regression) on the CPU kernel vs dni_kernels/reference.py.

Like linear_step it is a training step with no autograd; the float64 oracle test
checks its update against autograd's gradient of the regression loss.
"""

import itertools

import pytest
import torch

from dni_kernels import ops, reference
from samples import assert_unchanged, check_against_reference, make_sg_update_case, mutable_snapshot
from tolerances import assert_close

SHAPES = [(1, 3), (7, 17), (32, 48), (5, 64)]


def _cases():
    axes = list(itertools.product([torch.float32, torch.float64], SHAPES, ["sgd", "grads"], [None, 1, 10]))
    for i, (dtype, shape, mode, k) in enumerate(axes):
        yield pytest.param(
            dict(shape=shape, dtype=dtype, mode=mode, num_classes=k, sg_bias=i % 3 != 0, noncontig=i % 2 == 1),
            id=f"{str(dtype)[6:]}-{shape}-{mode}-K{k}-{i}",
        )  # fmt: skip


@pytest.mark.parametrize("cfg", list(_cases()))
def test_matches_reference(cfg):
    cfg = dict(cfg)
    case = make_sg_update_case(*cfg.pop("shape"), **cfg)
    check_against_reference(case, ops.sg_update, reference.sg_update, ("loss",))


@pytest.mark.parametrize("num_classes", [None, 4])
def test_oracle_equals_autograd_sgd(num_classes):
    """sg_raw computed from (h, A, a, C): the update is one SGD step on the loss."""
    case = make_sg_update_case(6, 5, dtype=torch.float64, num_classes=num_classes)
    s = case.state
    params = [p.clone().requires_grad_() for p in (s.sg_weight, s.sg_bias, s.sg_table) if p is not None]
    table = params[2] if num_classes else None
    raw = reference.sg_predict(s.h, params[0], params[1], table, s.labels)
    loss = ((raw - case.target) ** 2).sum() / s.h.shape[0]
    loss.backward()
    s.sg_raw = raw.detach()
    got_loss = case.call(ops.sg_update)
    assert_close(got_loss, loss.detach(), "loss")
    for name, p in zip(("sg_weight", "sg_bias", "sg_table"), params):
        assert_close(getattr(s, name), p.detach() - s.lr * p.grad, name)


def test_duplicate_labels_accumulate():
    """Rows sharing a label all update that class row (index_add, not overwrite)."""
    case = make_sg_update_case(9, 6, dtype=torch.float64, num_classes=2)
    case.state.labels.fill_(1)
    check_against_reference(case, ops.sg_update, reference.sg_update, ("loss",))


@pytest.mark.parametrize("cfg", [dict(num_classes=10, mode="sgd", noncontig=True), dict(num_classes=None, mode="grads")])
def test_opcheck(cfg):
    case = make_sg_update_case(5, 7, **cfg)
    torch.library.opcheck(torch.ops.dni.sg_update.default, case.op_args())


def test_torch_compile_fullgraph():
    case = make_sg_update_case(6, 8, num_classes=3)
    compiled = torch.compile(ops.sg_update, fullgraph=True)
    check_against_reference(case, compiled, reference.sg_update, ("loss",))


def _bad_inputs():
    def on_state(field, value):
        return lambda c: setattr(c.state, field, value(c.state))

    yield "target", lambda c: setattr(c, "target", c.target[:, :-1])
    yield "sg_raw", on_state("sg_raw", lambda s: s.sg_raw.double())
    yield "sg_weight", on_state("sg_weight", lambda s: s.sg_weight[:-1])
    yield "sg_bias", on_state("sg_bias", lambda s: s.sg_bias.double())
    yield "sg_table", on_state("sg_table", lambda s: s.sg_table[:, :-1])
    yield "labels", on_state("labels", lambda s: s.labels + 10)
    yield "labels", on_state("labels", lambda s: None)
    yield "lr", on_state("lr", lambda s: -1e-3)
    yield "lr", on_state("lr", lambda s: float("inf"))
    yield "sg_bias_grad", on_state("sg_bias_grad", lambda s: None)
    # A read-only input sharing memory with an updated tensor.
    yield "h shares memory with sg_weight", on_state("h", lambda s: s.sg_weight[:6])
    yield "target shares memory with sg_table", lambda c: setattr(c, "target", c.state.sg_table[:6])


@pytest.mark.parametrize("arg,corrupt", list(_bad_inputs()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_argument_and_writes_nothing(arg, corrupt):
    case = make_sg_update_case(6, 7, num_classes=10, mode="grads" if arg == "sg_bias_grad" else "sgd")
    corrupt(case)
    before = mutable_snapshot(case)
    with pytest.raises((RuntimeError, ValueError), match=arg):
        case.call(ops.sg_update)
    assert_unchanged(case, before, "was modified by a refused call")


@pytest.mark.parametrize("num_classes", [None, 1])
def test_many_small_steps_to_one_row_are_summed_first(num_classes):
    """B = 4096 rows regressing one bias (and one class row) by a step that is below
    float32's resolution per row, 5e-7 at 100: the update sums the rows in double and
    steps once, as the reference does (a step per row had left the table at 100)."""
    case = make_sg_update_case(4096, 8, num_classes=num_classes)
    s = case.state
    s.lr = 1e-3
    s.sg_bias.fill_(100.0)
    if num_classes:
        s.sg_table.fill_(100.0)
    case.target = s.sg_raw - 1.0  # e = 1 everywhere: every parameter moves by lr·2 = 2e-3
    expected, actual = case.clone(), case.clone()
    expected.call(reference.sg_update)
    actual.call(ops.sg_update)
    for (name, a), e in zip(actual.mutable().items(), expected.mutable().values()):
        if a is not None:
            assert_close(a, e, name)
    assert (actual.state.sg_bias - 99.998).abs().max() < 1e-5
    if num_classes:
        assert (actual.state.sg_table - 99.998).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["sgd", "grads"])
def test_empty_batch_matches_reference(mode):
    """B = 0: loss 0, every updated tensor unchanged, as in the reference."""
    case = make_sg_update_case(0, 7, num_classes=3, mode=mode)
    before = mutable_snapshot(case)
    check_against_reference(case, ops.sg_update, reference.sg_update, ("loss",))
    assert case.call(ops.sg_update).item() == 0
    assert_unchanged(case, before, "changed with an empty batch")


def test_overflowing_loss_is_inf_not_an_error():
    """A diverging run: the float32 loss overflows to inf, as the reference's does."""
    case = make_sg_update_case(3, 4)
    case.target.mul_(1e30)
    expected = case.clone().call(reference.sg_update)
    got = case.call(ops.sg_update)
    assert torch.isinf(expected) and torch.isinf(got)
