"""dni_kernels.nn.DNILSTM: the bootstrapped truncated-BPTT LSTM layer."""

from __future__ import annotations

import copy

import pytest
import torch

from dni_kernels import reference
from dni_kernels.nn import DNILSTM
from test_lstm import nn_lstm_like
from tolerances import assert_close

STEPS, BATCH, INP, HIDDEN = 5, 3, 4, 7


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    return DNILSTM(INP, HIDDEN, dtype=torch.float64, **kw)


def windows(count, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(STEPS, BATCH, INP, generator=gen, dtype=torch.float64),
             torch.randn(STEPS, BATCH, HIDDEN, generator=gen, dtype=torch.float64))
            for _ in range(count)]  # fmt: skip


def loss_fn(out, y):
    return 0.5 * ((out - y) ** 2).sum()


def randomise_heads(model, scale=0.3):
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in model.synthesizer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
        if model.aux_synthesizer is not None:
            for p in model.aux_synthesizer.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def test_zero_sg_is_truncated_bptt():
    """Zero-initialised SG ⇒ every window's LSTM gradients are nn.LSTM's with the state
    detached at the boundary."""
    model = make_model()
    lstm = nn_lstm_like(model.weight_ih.detach(), model.weight_hh.detach(), model.bias.detach())
    state = None
    for k, (x, y) in enumerate(windows(3)):
        model.zero_grad(), lstm.zero_grad()
        out, _ = model(x)
        loss_fn(out, y).backward()
        ref_out, state = lstm(x, state)
        state = tuple(s.detach() for s in state)
        loss_fn(ref_out, y).backward()
        assert_close(out, ref_out, f"out {k}")
        for name, got, exp in [("w_ih", model.weight_ih, lstm.weight_ih_l0),
                               ("w_hh", model.weight_hh, lstm.weight_hh_l0),
                               ("bias", model.bias, lstm.bias_ih_l0)]:  # fmt: skip
            assert_close(got.grad, exp.grad, f"{name} grad, window {k}")


@pytest.mark.parametrize("reads_cell,aux", [(False, False), (True, True), (False, True)])
def test_grads_match_reference(reads_cell, aux):
    """With a trained-looking SG: every parameter's .grad is the reference window's,
    window after window, from the carried state."""
    model = make_model(sg_reads_cell=reads_cell, aux=aux, sg_scale=0.2, aux_loss_weight=0.7)
    randomise_heads(model)
    h = c = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
    data = windows(3)
    for k, (x, y) in enumerate(data):
        last = k == len(data) - 1
        model.zero_grad()
        out, state = model(x, last_window=last)
        loss_fn(out, y).backward()
        aux_heads = ([model.aux_synthesizer.weight, model.aux_synthesizer.bias] if aux else [None, None])
        r = reference.lstm_dni_window(
            x, h, c, model.weight_ih, model.weight_hh, model.bias, model.synthesizer.weight,
            model.synthesizer.bias, *aux_heads, grad_hs=out.detach() - y, sg_scale=0.2,
            sg_reads_cell=reads_cell, bootstrap=not last, aux_loss_weight=0.7)  # fmt: skip
        assert_close(out, r.hs, f"out {k}")
        pairs = [(model.weight_ih, r.grad_w_ih), (model.weight_hh, r.grad_w_hh), (model.bias, r.grad_bias),
                 (model.synthesizer.weight, r.grad_sg_weight), (model.synthesizer.bias, r.grad_sg_bias)]  # fmt: skip
        if aux:
            pairs += [(model.aux_synthesizer.weight, r.grad_aux_weight),
                      (model.aux_synthesizer.bias, r.grad_aux_bias)]  # fmt: skip
        for i, (p, g) in enumerate(pairs):
            assert_close(p.grad, g, f"param {i}, window {k}")
        h, c = r.hs[-1], r.cs[-1]
        assert torch.equal(state[0], out[-1].detach())


def test_bootstrap_changes_lstm_grads_and_last_window_does_not():
    """A nonzero SG adds ĝ_end to BPTT; last_window=True removes it again."""
    grads = {}
    x, y = windows(1)[0]
    for name, sg, last in [("plain", False, False), ("sg", True, False), ("sg_last", True, True)]:
        model = make_model()
        if sg:
            randomise_heads(model)
        out, _ = model(x, last_window=last)
        loss_fn(out, y).backward()
        grads[name] = model.weight_hh.grad
    assert (grads["sg"] - grads["plain"]).abs().max() > 1e-3
    assert_close(grads["sg_last"], grads["plain"], "last window = truncated BPTT")


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop])
def test_trains_with_any_optimizer(optimizer):
    model = make_model(aux=True, sg_reads_cell=True)
    opt = optimizer(model.parameters(), lr=1e-2)
    start = copy.deepcopy(model.state_dict())
    data = windows(4)
    for epoch in range(3):
        model.reset_state()
        for k, (x, y) in enumerate(data):
            out, _ = model(x, last_window=k == len(data) - 1)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
    for name, p in model.state_dict().items():  # every parameter learned, SG heads included
        assert not torch.equal(p, start[name]), name


def test_autocast_changes_nothing():
    """Windows trained inside a CPU autocast region (float32 model): the same outputs
    and parameters, bit for bit, as without it (the ops run in their inputs' dtypes,
    test_autocast.py)."""
    states = []
    for on in (False, True):
        model = make_model(aux=True, sg_reads_cell=True).float()
        randomise_heads(model)
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        outs = []
        for x, y in windows(3):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
                out, _ = model(x.float())
                loss = loss_fn(out, y.float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            outs.append(out.detach())
        states.append((outs, model.state_dict()))
    (outs, plain), (outs_cast, cast) = states
    assert all(torch.equal(a, b) for a, b in zip(outs, outs_cast))
    for name, p in plain.items():
        assert torch.equal(cast[name], p), name


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_with_explicit_state(reentrant):
    """torch.utils.checkpoint around windows given their start state: the plain run's
    gradients and carried state. Without state= the recomputation would read a state
    that has moved on: refused."""
    data = windows(3)
    runs = []
    for ckpt in (False, True):
        model = make_model(aux=True)
        randomise_heads(model)
        state = None
        for x, y in data:
            x = x.clone().requires_grad_()  # the reentrant checkpoint needs one
            if ckpt:
                start = state if state is not None else (torch.zeros(BATCH, HIDDEN, dtype=x.dtype),) * 2
                out = torch.utils.checkpoint.checkpoint(lambda t, h, c: model(t, (h, c))[0], x, *start,
                                                        use_reentrant=reentrant)  # fmt: skip
            else:
                out, _ = model(x)
            state = model.state
            loss_fn(out, y).backward()
        runs.append(({n: p.grad for n, p in model.named_parameters()}, model.state))
    (grads, state), (grads_ckpt, state_ckpt) = runs
    for name, g in grads.items():
        assert_close(grads_ckpt[name], g, name)
    assert torch.equal(state_ckpt[0], state[0]) and torch.equal(state_ckpt[1], state[1])
    model = make_model()
    x = data[0][0].clone().requires_grad_()
    out = torch.utils.checkpoint.checkpoint(lambda t: model(t)[0], x, use_reentrant=reentrant)
    with pytest.raises(RuntimeError, match="start state explicitly"):
        out.sum().backward()


def test_forward_in_a_backward_hook_is_not_a_recomputation():
    """A model run without grad from a hook during an ordinary backward (a monitor, say)
    is an ordinary forward: it runs and carries its state."""
    model, monitor = make_model(), make_model(seed=1)
    x, y = windows(1)[0]
    out, _ = model(x)
    seen = []

    def hook(grad):
        with torch.no_grad():
            seen.append(monitor(x)[0])
        return grad

    out.register_hook(hook)
    loss_fn(out, y).backward()
    assert len(seen) == 1 and monitor.state is not None


def test_carried_state_follows_the_model_and_refuses_a_batch_change():
    """The carried state moves with .double(); a window run under inference_mode
    (a quick evaluation) does not break the next training window; a new batch size
    needs reset_state()."""
    model = make_model().float()
    model(torch.randn(STEPS, BATCH, INP))
    model.double()
    model(torch.randn(STEPS, BATCH, INP, dtype=torch.float64))
    with torch.inference_mode():
        model(torch.randn(STEPS, BATCH, INP, dtype=torch.float64))
    out, _ = model(torch.randn(STEPS, BATCH, INP, dtype=torch.float64))
    out.sum().backward()
    state = model.state
    with pytest.raises(ValueError, match="reset_state"):
        model(torch.randn(STEPS, BATCH + 1, INP, dtype=torch.float64))
    assert model.state is state  # the refused window changed nothing
    model.reset_state()
    model(torch.randn(STEPS, BATCH + 1, INP, dtype=torch.float64))


def test_batch_first():
    """batch_first=True takes x [B, T, I] and returns out [B, T, H]: the same outputs,
    state and gradients as the time-major layer on the transposed windows."""
    runs = []
    for batch_first in (False, True):
        model = make_model(aux=True, batch_first=batch_first)
        randomise_heads(model)
        outs = []
        for x, y in windows(2):
            out, state = model(x.transpose(0, 1) if batch_first else x)
            out = out.transpose(0, 1) if batch_first else out
            loss_fn(out, y).backward()
            outs.append(out.detach())
        runs.append((outs, state, {n: p.grad for n, p in model.named_parameters()}))
    (outs, state, grads), (outs_bf, state_bf, grads_bf) = runs
    assert all(torch.equal(a, b) for a, b in zip(outs, outs_bf))
    assert torch.equal(state[0], state_bf[0]) and torch.equal(state[1], state_bf[1])
    for name, g in grads.items():
        assert_close(grads_bf[name], g, name)
    with pytest.raises(ValueError, match=r"\[batch, steps, input_size\]"):
        make_model(batch_first=True)(torch.randn(BATCH, INP, dtype=torch.float64))


def test_compile_fullgraph_training_windows():
    """A training step over windows with the carried state, compiled with
    fullgraph=True, equals eager: outputs, carried state and gradients."""
    runs = []
    for compiled in (False, True):
        model = make_model(aux=True, sg_reads_cell=True, batch_first=True)
        randomise_heads(model)

        def step(x, y):
            out, _ = model(x)
            return loss_fn(out, y)

        fn = torch.compile(step, fullgraph=True) if compiled else step
        for x, y in windows(3):
            fn(x.transpose(0, 1), y.transpose(0, 1)).backward()
        runs.append((model.state, {n: p.grad for n, p in model.named_parameters()}))
    (state, grads), (state_c, grads_c) = runs
    assert_close(state_c[0], state[0], "h_T")
    for name, g in grads.items():
        assert_close(grads_c[name], g, name)


def test_state_carried_and_reset():
    model = make_model()
    randomise_heads(model)
    (x1, _), (x2, _) = windows(2)
    _, (h1, c1) = model(x1)
    out2, _ = model(x2)
    expected, _, _ = reference.lstm_window_forward(x2, h1, c1, model.weight_ih, model.weight_hh, model.bias)
    assert_close(out2, expected, "second window starts from the carried state")
    assert not model.state[0].requires_grad
    model.reset_state()
    out1_again, _ = model(x1)
    zeros = torch.zeros(BATCH, HIDDEN, dtype=torch.float64)
    expected, _, _ = reference.lstm_window_forward(x1, zeros, zeros, model.weight_ih, model.weight_hh, model.bias)
    assert_close(out1_again, expected, "after reset_state")
    out_explicit, _ = model(x2, (h1, c1))  # an explicit state overrides the carried one
    assert_close(out_explicit, out2, "explicit state")


def test_state_dict_round_trip():
    model = make_model(aux=True)
    randomise_heads(model)
    x, y = windows(1)[0]
    fresh = make_model(seed=5, aux=True)
    fresh.load_state_dict(model.state_dict())
    fresh_sg = make_model(seed=6).synthesizer
    fresh_sg.load_state_dict(model.synthesizer.state_dict())
    assert torch.equal(fresh_sg.weight, model.synthesizer.weight)
    for m in (model, fresh):
        out, _ = m(x)
        loss_fn(out, y).backward()
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_aux_head_trains_only_itself():
    """Aux on: the aux head gets gradients; the LSTM and SG gradients are unchanged.
    (Second window, so that s_start ≠ 0 and the head's weight gradient is nonzero.)"""
    models = {}
    for aux in (False, True):
        model = make_model(aux=aux)
        randomise_heads(model)  # the same SG draw in both models
        for x, y in windows(2):
            model.zero_grad()
            out, _ = model(x)
            loss_fn(out, y).backward()
        models[aux] = model
    assert models[False].aux_synthesizer is None
    assert models[True].aux_synthesizer.weight.grad.abs().max() > 0
    for (name, p), q in zip(models[False].named_parameters(), models[True].parameters()):
        assert_close(p.grad, q.grad, f"{name} with aux on")


def test_bad_input_changes_nothing():
    model = make_model()
    (x, y), (x2, _) = windows(2)
    model(x)
    state = tuple(s.clone() for s in model.state)
    params = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="x must be"):
        model(x[0])
    with pytest.raises(RuntimeError, match="h0 must have shape"):
        model(x2, (torch.zeros(BATCH + 1, HIDDEN, dtype=torch.float64),) * 2)
    with pytest.raises(RuntimeError, match="x must have|w_ih must have shape"):
        model(x2[..., :2])
    assert all(torch.equal(a, b) for a, b in zip(model.state, state))
    assert all(torch.equal(p, params[n]) for n, p in model.state_dict().items())
    with pytest.raises(ValueError, match="aux_loss_weight"):
        DNILSTM(INP, HIDDEN, aux=True, aux_loss_weight=-1.0)
