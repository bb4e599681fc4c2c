"""The DNI modules as a user meets them: serialisation, .to(), torch.compile, the
generic BackwardInterface and DNIConv2d, eval mode, and clear errors."""

import copy

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune
from torch import nn

from dni_kernels.nn import (DNILSTM, BackwardInterface, ConvSynthesizer, DNIConv2d, DNILinear,
                            DNISequential, LinearSynthesizer, MLPSynthesizer)  # fmt: skip
from nn_helpers import BATCH, CLASSES, HIDDEN, IN, batches, make_mlp, params, step
from tolerances import assert_close


def _train(model, n=3, seed=0, **opt_kw):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, **opt_kw)
    for x, y in batches(n, seed=seed):
        step(model, opt, x, y)


def test_state_dict_round_trip_mlp_synthesizers_with_batchnorm():
    def build():
        return make_mlp(conditioned_on=CLASSES, synthesizer=MLPSynthesizer, batchnorm=True)

    model = build()
    _train(model)
    clone = build()
    clone.load_state_dict(model.state_dict())
    _assert_params_and_buffers_equal(model, clone)
    _train(model, seed=1)  # the same next steps from the restored state
    _train(clone, seed=1)
    _assert_params_and_buffers_equal(model, clone)


def _assert_params_and_buffers_equal(a, b):
    sd_b = b.state_dict()
    for name, t in a.state_dict().items():
        assert torch.equal(t, sd_b[name]), name


def test_to_float64_trains_on_fused_path_like_reference():
    fused = make_mlp().to(torch.float64)
    ref = make_mlp(fused=False).to(dtype=torch.float64)
    ref.load_state_dict(fused.state_dict())
    assert all(p.dtype == torch.float64 for p in fused.parameters())
    for model in (fused, ref):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in batches(2, torch.float64):
            step(model, opt, x, y)
    for name, p in params(fused).items():
        assert_close(p, params(ref)[name], name)


@pytest.mark.parametrize("update", ["grads", "sgd"])
def test_torch_compile_fullgraph_training_step(update):
    kw = dict(update="sgd", lr=0.1, lr_sg=0.5) if update == "sgd" else {}
    eager = make_mlp(conditioned_on=CLASSES, **kw)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True)  # fails on any graph break
    for model, fn in ((eager, eager), (compiled_model, compiled)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in batches(2):
            opt.zero_grad()
            F.cross_entropy(fn(x, labels=y), y).backward()
            opt.step()
    init = params(make_mlp(conditioned_on=CLASSES, **kw))
    after = params(compiled_model)
    for name, p in params(eager).items():
        assert_close(after[name], p, name)
    assert (after["layers.0.weight"] - init["layers.0.weight"]).abs().max() > 1e-4


@pytest.mark.parametrize("update", ["grads", "sgd"])
def test_trains_under_autocast(update):
    """A float32 DNIMLP trains inside a CPU autocast region (the head then computes in
    bfloat16). Over two steps the first layer's update depends only on its inputs and
    the initial SGs of the first two layers, not on the head, so it is bit-identical
    to training without autocast: the fused ops never see autocast (test_autocast.py)."""
    kw = dict(update="sgd", lr=0.1, lr_sg=0.5) if update == "sgd" else {}
    after = []
    for on in (False, True):
        model = make_mlp(conditioned_on=CLASSES, **kw)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in batches(2):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
                loss = F.cross_entropy(model(x, labels=y), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
        after.append(params(model))
    plain, cast = after
    assert all(p.dtype == torch.float32 for p in cast.values())
    assert torch.equal(cast["layers.0.weight"], plain["layers.0.weight"])


def test_half_input_from_an_autocast_layer():
    """Under autocast a plain layer below hands a DNILinear (or DNILSTM) a bfloat16
    input; the DNI layer casts it to its own dtype (differentiably) instead of refusing
    it, and the layer below still gets its gradient."""
    torch.manual_seed(0)
    model = DNISequential(nn.Linear(IN, 16), DNILinear(16, 16), head=nn.Linear(16, CLASSES))
    x, y = batches(1)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert model.layers[0].weight.grad is not None and model.layers[1].weight.grad is not None
    lstm, embed = DNILSTM(8, 6), nn.Linear(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = lstm(embed(torch.randn(3, 2, 4)))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert embed.weight.grad is not None and lstm.weight_ih.grad is not None


def test_backward_interface_after_any_module_matches_fused_layer():
    """nn.Linear → ReLU → BackwardInterface(LinearSynthesizer) is a DNILinear: the
    generic reference path and the fused op must give the same gradients."""
    torch.manual_seed(0)
    layer = DNILinear(IN, HIDDEN[0], conditioned_on=CLASSES)
    with torch.no_grad():
        for p in layer.synthesizer.parameters():
            p.normal_(0, 0.1)
    linear = nn.Linear(IN, HIDDEN[0])
    linear.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    interface = BackwardInterface(copy.deepcopy(layer.synthesizer))
    head = nn.Linear(HIDDEN[0], CLASSES)
    x, y = batches(1)[0]
    x_fused, x_generic = x.clone().requires_grad_(), x.clone().requires_grad_()
    F.cross_entropy(head(layer(x_fused, labels=y)), y).backward()
    F.cross_entropy(head(interface(torch.relu(linear(x_generic)), labels=y)), y).backward()
    assert_close(x_fused.grad, x_generic.grad, "grad_x (lower SG target)")
    assert_close(layer.weight.grad, linear.weight.grad, "weight.grad")
    for (name, p), q in zip(layer.synthesizer.named_parameters(), interface.synthesizer.parameters()):
        assert_close(p.grad, q.grad, name + ".grad")
    assert_close(layer.sg_loss, interface.sg_loss, "sg_loss")


@pytest.mark.parametrize("update", ["grads", "sgd"])
def test_first_layer_computes_grad_x_only_for_an_input_that_requires_grad(update, monkeypatch):
    """grad_x of the first fused layer has no reader unless the input requires grad:
    the op skips it (compute_grad_x=False); the layers above always compute theirs
    (the SG regression of the layer below). With requires_grad, x.grad arrives."""
    import dni_kernels.ops

    flags = []
    real = dni_kernels.ops.linear_step

    def spy(*args, **kwargs):
        flags.append(kwargs["compute_grad_x"])
        return real(*args, **kwargs)

    monkeypatch.setattr(dni_kernels.ops, "linear_step", spy)
    kw = dict(update="sgd", lr=0.1, lr_sg=0.5) if update == "sgd" else {}
    model = make_mlp(**kw)
    x, y = batches(1)[0]
    for requires_grad in (False, True):
        flags.clear()
        x.requires_grad_(requires_grad)
        F.cross_entropy(model(x), y).backward()
        assert flags == [requires_grad] + [True] * (len(HIDDEN) - 1)
        assert (x.grad is not None) == requires_grad
    assert x.grad.shape == x.shape and torch.count_nonzero(x.grad) > 0


def test_dni_conv2d_gradients_follow_the_definition():
    """Conv layer grads = autograd with grad_output ĝ; SG grads = ∇(1/B)‖ĝ − δ‖²."""
    torch.manual_seed(0)
    conv = DNIConv2d(2, 3, 3, padding=1, conditioned_on=CLASSES)
    with torch.no_grad():
        conv.synthesizer.out.weight.normal_(0, 0.1)
    head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, CLASSES))
    x = torch.randn(BATCH, 2, 5, 5)
    y = torch.randint(0, CLASSES, (BATCH,))
    reference = copy.deepcopy(conv)
    F.cross_entropy(head(conv(x, labels=y)), y).backward()

    h = reference.forward_plain(x)
    h_out = h.detach().requires_grad_()
    delta = torch.autograd.grad(F.cross_entropy(head(h_out), y), h_out)[0]
    sg = reference.synthesizer(h.detach(), y)
    h.backward(sg.detach())
    ((sg - delta) ** 2).sum().div(BATCH).backward()
    for (name, p), q in zip(conv.named_parameters(), reference.parameters()):
        assert_close(p.grad, q.grad, name + ".grad")


def test_eval_mode_is_the_ordinary_layer():
    model = make_mlp(conditioned_on=CLASSES).eval()
    x, _ = batches(1)[0]
    h = x
    for layer in model.layers:
        h = torch.relu(F.linear(h, layer.weight, layer.bias))
    assert_close(model(x), model.head(h), "eval forward")
    model(x).sum().backward()  # eval mode: plain backprop through every layer
    assert model.layers[0].weight.grad.abs().max() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="gelu"), "activation"),
        (dict(update="adam"), "update"),
        (dict(update="sgd", lr=0.1), "lr_sg"),
        (dict(synthesizer=MLPSynthesizer(4), fused=True), "fused"),
        (dict(synthesizer=MLPSynthesizer(4), update="sgd", lr=0.1, lr_sg=0.1), "update='sgd'"),
        (dict(synthesizer=LinearSynthesizer(4), conditioned_on=3), "conditioned_on"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DNILinear(3, 4, **kwargs)


def test_missing_labels_for_cdni_is_a_clear_error():
    model = make_mlp(conditioned_on=CLASSES)
    x, _ = batches(1)[0]
    with pytest.raises(ValueError, match="labels"):
        ConvSynthesizer(3, num_classes=2)(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="labels"):
        model(x)


def test_mixed_update_modes_rejected():
    with pytest.raises(ValueError, match="layers"):
        DNISequential(DNILinear(3, 4), DNILinear(4, 4, update="sgd", lr=0.1, lr_sg=0.1),
                      head=nn.Linear(4, 2))  # fmt: skip


def test_each_synthesizer_runs_once_per_step():
    calls = []
    model = make_mlp(conditioned_on=CLASSES, synthesizer=MLPSynthesizer)
    for layer in model.layers:
        layer.synthesizer.register_forward_hook(lambda *_: calls.append(1))
    _train(model, n=2)
    assert len(calls) == 2 * len(HIDDEN)


def test_chain_of_standalone_layers_equals_fused_stack():
    """Layer by layer (each SG regressed when backward reaches it) == DNISequential
    (each SG regressed inside the next layer's launch)."""
    stacked = make_mlp(conditioned_on=CLASSES)
    chained = copy.deepcopy(stacked)
    x, y = batches(1)[0]
    F.cross_entropy(stacked(x, labels=y), y).backward()
    h = x
    for layer in chained.layers:
        h = layer(h, labels=y)
    F.cross_entropy(chained.head(h), y).backward()
    for (name, p), q in zip(stacked.named_parameters(), chained.parameters()):
        assert_close(p.grad, q.grad, name + ".grad")


SGD = dict(update="sgd", lr=0.1, lr_sg=0.5)


def test_sgd_mode_leaves_frozen_parameters_alone():
    """requires_grad_(False) freezes a layer (and its synthesizer) in "sgd" mode too,
    where the kernels step the parameters in place: they get step 0."""
    model = make_mlp(conditioned_on=CLASSES, **SGD)
    for p in model.layers[0].parameters():
        p.requires_grad_(False)
    model.layers[1].synthesizer.requires_grad_(False)
    before = params(model)
    _train(model)
    after = params(model)
    for name in before:
        frozen = name.startswith("layers.0.") or name.startswith("layers.1.synthesizer.")
        assert torch.equal(after[name], before[name]) == frozen, name


@pytest.mark.parametrize("change", ["partly frozen", "weight_norm"])
def test_sgd_mode_refuses_what_it_cannot_step(change):
    """A partly frozen group (one step size covers it) and a parametrized weight (the
    in-place step would miss the real parameters): a clear error, nothing written."""
    model = make_mlp(**SGD)
    if change == "partly frozen":
        model.layers[1].bias.requires_grad_(False)
    else:
        nn.utils.parametrizations.weight_norm(model.layers[1], "weight")
    before = params(model)
    with pytest.raises(ValueError, match="partly frozen" if change == "partly frozen" else "parametrization"):
        _train(model, n=1)
    for name, p in params(model).items():
        assert torch.equal(p, before[name]), name


def test_layer_hooks_run_and_pruning_trains():
    """With hooks on its layers a stack runs layer by layer (the fused launches would
    skip them): hooks fire, and a pruned layer trains weight_orig with the mask kept."""
    model = make_mlp()
    calls = []
    model.layers[1].register_forward_pre_hook(lambda m, i: calls.append("pre"))
    model.layers[1].register_full_backward_hook(lambda m, gi, go: calls.append("backward"))
    torch.nn.utils.prune.l1_unstructured(model.layers[0], "weight", amount=0.5)
    orig = model.layers[0].weight_orig.detach().clone()
    _train(model, n=2)
    assert calls == ["pre", "backward"] * 2
    layer = model.layers[0]
    assert not torch.equal(layer.weight_orig, orig)
    assert torch.equal(layer.weight == 0, layer.weight_mask == 0)


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint(reentrant):
    """torch.utils.checkpoint around a "grads" stack gives the plain step's gradients;
    an "sgd" stack, which steps its weights during forward, refuses the recomputation
    (it would step them twice)."""
    x, y = batches(1)[0]
    x.requires_grad_()  # the reentrant checkpoint needs an input that requires grad
    grads = []
    for ckpt in (False, True):
        model = make_mlp(conditioned_on=CLASSES)
        run = (lambda t: torch.utils.checkpoint.checkpoint(model, t, y, use_reentrant=reentrant)) if ckpt else (
            lambda t: model(t, labels=y))  # fmt: skip
        F.cross_entropy(run(x), y).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert_close(grads[1][name], g, name)
    model = make_mlp(**SGD)
    out = torch.utils.checkpoint.checkpoint(model, x, use_reentrant=reentrant)
    with pytest.raises(RuntimeError, match="checkpoint"):
        F.cross_entropy(out, y).backward()
