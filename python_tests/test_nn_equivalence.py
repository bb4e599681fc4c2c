"""The DNI modules against independent paths: backprop (oracle SG), No-Bprop (frozen
zero SG), the plain-PyTorch reference path, and both orders of zero_grad()."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dni_kernels.nn import DNIMLP, LinearSynthesizer
from nn_helpers import BATCH, CLASSES, HIDDEN, IN, batches, make_mlp, params, step
from tolerances import assert_close

STEPS = 4


def _sgd_groups(model, lr, lr_sg, momentum=0.0):
    return torch.optim.SGD(
        [{"params": list(model.model_parameters()), "lr": lr},
         {"params": list(model.synthesizer_parameters()), "lr": lr_sg}],
        lr=lr, momentum=momentum,
    )  # fmt: skip


def _assert_same_params(a, b, skip=()):
    for name, p in a.items():
        if name not in skip:
            assert_close(p, b[name], name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("conditioned", [None, CLASSES])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fused_equals_reference_grads_mode(dtype, conditioned, activation):
    kw = dict(dtype=dtype, conditioned_on=conditioned, activation=activation)
    fused = make_mlp(**kw)
    ref = make_mlp(fused=False, **kw)
    assert fused.fused and not ref.fused
    ref.load_state_dict(fused.state_dict())
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (fused, ref)]
    for x, y in batches(STEPS, dtype):
        for model, opt in zip((fused, ref), opts):
            step(model, opt, x, y)
        for (name, g), g_ref in zip(((n, p.grad) for n, p in fused.named_parameters()),
                                    (p.grad for p in ref.parameters())):  # fmt: skip
            assert_close(g, g_ref, name + ".grad")
        assert_close(torch.stack(fused.sg_losses()), torch.stack(ref.sg_losses()), "sg_losses")
    _assert_same_params(params(fused), params(ref))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_sgd_mode_equals_reference_grads_with_plain_sgd(dtype):
    """In-place updates during the step == all gradients first, then one SGD step:
    each update uses only values from before it (the spec's W before update)."""
    lr, lr_sg = 0.1, 0.5
    fused = make_mlp(dtype, conditioned_on=CLASSES, update="sgd", lr=lr, lr_sg=lr_sg)
    ref = make_mlp(dtype, conditioned_on=CLASSES, fused=False)
    ref.load_state_dict(fused.state_dict())
    before = params(fused)
    head_opt = torch.optim.SGD(fused.head.parameters(), lr=lr)
    ref_opt = _sgd_groups(ref, lr, lr_sg)
    for x, y in batches(STEPS, dtype):
        step(fused, head_opt, x, y)
        step(ref, ref_opt, x, y)
        assert all(p.grad is None for p in fused.layers.parameters()), "sgd mode wrote .grad"
    after = params(fused)
    _assert_same_params(after, params(ref))
    assert (after["layers.0.weight"] - before["layers.0.weight"]).abs().max() > 1e-4


@pytest.mark.parametrize("fused", [True, False])
def test_zero_grad_order_does_not_matter(fused):
    """forward → zero_grad → backward must give what zero_grad → forward → backward
    gives: nothing may be written to .grad before backward runs."""
    models = [make_mlp(conditioned_on=CLASSES, fused=fused) for _ in range(2)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in models]
    for x, y in batches(STEPS):
        step(models[0], opts[0], x, y, zero_grad_first=True)
        step(models[1], opts[1], x, y, zero_grad_first=False)
    a, b = params(models[0]), params(models[1])
    _assert_same_params(a, b)
    init = params(make_mlp(conditioned_on=CLASSES))
    assert (a["layers.0.weight"] - init["layers.0.weight"]).abs().max() > 1e-4


class _OracleSynthesizer(nn.Module):
    """Returns the exact ∂L/∂h by running the rest of the network (a test oracle:
    with it, decoupled training must equal backprop). No parameters to regress."""

    def __init__(self, rest):
        super().__init__()
        self._rest = [rest]  # a list, so the model is not registered as a submodule

    def forward(self, h, labels):
        with torch.enable_grad():
            h = h.detach().requires_grad_()
            loss = F.cross_entropy(self._rest[0](h), labels)
            return torch.autograd.grad(loss, h)[0]


def test_oracle_synthesizers_train_like_backprop():
    torch.manual_seed(0)
    model = DNIMLP(IN, HIDDEN, CLASSES, synthesizer=lambda f, num_classes: nn.Identity())
    for i, layer in enumerate(model.layers):
        def rest(h, i=i):
            for upper in model.layers[i + 1 :]:
                h = upper.forward_plain(h)
            return model.head(h)

        layer.synthesizer = _OracleSynthesizer(rest)
    model.double()
    sizes = [IN, *HIDDEN]
    backprop = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())],
                             nn.Linear(sizes[-1], CLASSES)).double()  # fmt: skip
    linears = [m for m in backprop if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for mine, theirs in zip([*model.layers, model.head], linears):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    opt_bp = torch.optim.SGD(backprop.parameters(), lr=0.2, momentum=0.9)
    for x, y in batches(6, torch.float64):
        step(model, opt, x, y)
        opt_bp.zero_grad()
        F.cross_entropy(backprop(x), y).backward()
        opt_bp.step()
    for mine, theirs in zip([*model.layers, model.head], linears):
        assert_close(mine.weight, theirs.weight, "weight")
        assert_close(mine.bias, theirs.bias, "bias")


@pytest.mark.parametrize("update", ["sgd", "grads"])
def test_zero_sg_not_trained_is_no_bprop(update):
    """Zero-initialised SG that never learns ⇒ every DNI layer stays at its initial
    weights and only the head trains: the paper's No-Bprop baseline."""
    lr = 0.1
    kw = dict(update="sgd", lr=lr, lr_sg=0.0) if update == "sgd" else {}
    model = make_mlp(torch.float64, random_sg=False, **kw)
    init = params(model)
    trained = model.parameters() if update == "sgd" else model.model_parameters()
    opt = torch.optim.SGD(trained, lr=lr)
    head = nn.Linear(HIDDEN[-1], CLASSES).double()
    head.load_state_dict(model.head.state_dict())
    head_opt = torch.optim.SGD(head.parameters(), lr=lr)
    for x, y in batches(STEPS, torch.float64):
        step(model, opt, x, y)
        with torch.no_grad():
            features = x
            for layer in model.layers:
                features = layer.forward_plain(features)
        head_opt.zero_grad()
        F.cross_entropy(head(features), y).backward()
        head_opt.step()
    after = params(model)
    _assert_same_params(after, init, skip={"head.weight", "head.bias"})
    assert_close(model.head.weight, head.weight, "head.weight")
    assert (after["head.weight"] - init["head.weight"]).abs().max() > 1e-3


def test_synthesizers_start_at_zero():
    synth = LinearSynthesizer(7, num_classes=3)
    h = torch.randn(BATCH, 7)
    assert synth(h, torch.zeros(BATCH, dtype=torch.long)).abs().max() == 0
