"""Pure-PyTorch reference of every dni_kernels op: the readable specification.

Every fused kernel (C++ CPU, CUDA C++, Triton) is tested against these functions.
They are written for clarity, op by op, and mutate their arguments exactly as the
fused ops do, so a test can compare outputs *and* the updated weights.

Notation for one decoupled layer (Jaderberg et al. 2016, arXiv 1608.05343):

    x  [B, I]   input              W [O, I], b [O]   layer weight and bias
    z = x Wᵀ + b,   h = φ(z)       φ ∈ {identity, relu, tanh, sigmoid}
    A  [O, O], a [O]               linear synthetic-gradient (SG) model
    C  [K, O], y [B]               optional class table and labels (conditional DNI, cDNI)

    ĝ_raw = h Aᵀ + a + C[y]        what the SG model regresses
    ĝ     = s · ĝ_raw              the synthetic gradient ∂L/∂h, with a user scale s
    g     = ĝ ⊙ φ′(z)              gradient at the pre-activation
    grad_x = g W                   with W *before* the update: the layer below's SG target
    W ← W − lr · gᵀ x,  b ← b − lr · Σ_batch g        ("sgd" mode)
    W.grad += gᵀ x,     b.grad += Σ_batch g           ("grads" mode)

SG regression, once the target δ for h arrives (the next layer's grad_x, or the
true gradient):

    e = ĝ_raw − δ,  loss = (1/B) Σ ‖e‖²
    A ← A − lr_sg · (2/B) eᵀ h,  a ← a − lr_sg · (2/B) Σ e,  C[y] rows ← likewise

so the SG regresses exactly what autograd would put in h.grad for the user's loss.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def activation_forward(z: Tensor, activation: str) -> Tensor:
    """h = φ(z)."""
    if activation == "identity":
        return z.clone()
    if activation == "relu":
        return torch.relu(z)
    if activation == "tanh":
        return torch.tanh(z)
    if activation == "sigmoid":
        return torch.sigmoid(z)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def activation_derivative(h: Tensor, activation: str) -> Tensor:
    """φ′(z) written through h = φ(z): the fused kernels keep only h, never z."""
    if activation == "identity":
        return torch.ones_like(h)
    if activation == "relu":
        return (h > 0).to(h.dtype)
    if activation == "tanh":
        return 1 - h * h
    if activation == "sigmoid":
        return h * (1 - h)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def sg_predict(
    h: Tensor,
    sg_weight: Tensor,
    sg_bias: Optional[Tensor] = None,
    sg_table: Optional[Tensor] = None,
    labels: Optional[Tensor] = None,
) -> Tensor:
    """ĝ_raw = h Aᵀ + a + C[y] (the unscaled synthetic gradient)."""
    sg_raw = h @ sg_weight.t()
    if sg_bias is not None:
        sg_raw = sg_raw + sg_bias
    if sg_table is not None:
        sg_raw = sg_raw + sg_table[labels]
    return sg_raw


class PrevSG(NamedTuple):
    """The previous (lower) layer's SG state, regressed inside the next layer's step.

    ``h`` and ``sg_raw`` are what the lower layer's step returned; the target is the
    ``grad_x`` that the step of the layer above computes. With ``sg_weight_grad``
    given the regression goes into the ``*_grad`` tensors ("grads" mode) and the SG
    parameters are left untouched.
    """

    h: Tensor
    sg_raw: Tensor
    sg_weight: Tensor
    sg_bias: Optional[Tensor] = None
    sg_table: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    lr: float = 0.0
    sg_weight_grad: Optional[Tensor] = None
    sg_bias_grad: Optional[Tensor] = None
    sg_table_grad: Optional[Tensor] = None


@torch.no_grad()
def sg_update(
    h: Tensor,
    sg_raw: Tensor,
    target: Tensor,
    sg_weight: Tensor,
    sg_bias: Optional[Tensor] = None,
    sg_table: Optional[Tensor] = None,
    labels: Optional[Tensor] = None,
    *,
    lr: float,
    sg_weight_grad: Optional[Tensor] = None,
    sg_bias_grad: Optional[Tensor] = None,
    sg_table_grad: Optional[Tensor] = None,
) -> Tensor:
    """Regress the SG model toward ``target``; returns the loss (1/B) Σ ‖ĝ_raw − δ‖².

    In "sgd" mode (no ``sg_weight_grad``) A, a, C are updated in place with step
    ``lr``; in "grads" mode the gradients of the loss are added to the ``*_grad``
    tensors and ``lr`` is unused. ``lr = 0`` leaves A, a, C untouched, bit for bit,
    even where the gradient is NaN or inf (a frozen SG stays frozen).
    """
    batch = max(h.shape[0], 1)  # an empty batch: loss 0, zero updates
    e = sg_raw - target
    loss = (e * e).sum() / batch
    scale = 2.0 / batch
    d_weight = scale * (e.t() @ h)
    d_bias = scale * e.sum(0)
    d_table = None
    if sg_table is not None:
        d_table = torch.zeros_like(sg_table).index_add_(0, labels, scale * e)
    grads_mode = sg_weight_grad is not None
    if grads_mode:
        sg_weight_grad += d_weight
        if sg_bias is not None:
            sg_bias_grad += d_bias
        if sg_table is not None:
            sg_table_grad += d_table
    elif lr != 0:
        sg_weight -= lr * d_weight
        if sg_bias is not None:
            sg_bias -= lr * d_bias
        if sg_table is not None:
            sg_table -= lr * d_table
    return loss


@torch.no_grad()
def linear_step(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    sg_weight: Tensor,
    sg_bias: Optional[Tensor] = None,
    sg_table: Optional[Tensor] = None,
    labels: Optional[Tensor] = None,
    *,
    activation: str = "relu",
    sg_scale: float = 1.0,
    lr: float,
    weight_grad: Optional[Tensor] = None,
    bias_grad: Optional[Tensor] = None,
    prev: Optional[PrevSG] = None,
    compute_grad_x: bool = True,
    sg_override: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One decoupled layer step. Returns ``(h, sg_raw, grad_x, prev_loss)``.

    * forward: h = φ(x Wᵀ + b)
    * SG: ĝ_raw = h Aᵀ + a + C[y], ĝ = sg_scale · ĝ_raw
    * g = ĝ ⊙ φ′(z); grad_x = g W (W before the update)
    * local update of W, b ("sgd" mode, step ``lr``; ``lr = 0`` leaves them untouched,
      as in :func:`sg_update`) or accumulation into ``weight_grad``/``bias_grad``
      ("grads" mode)
    * if ``prev`` is given: the lower layer's SG regression toward this ``grad_x``
      (see :func:`sg_update`); its loss is ``prev_loss`` (0 without ``prev``).

    ``compute_grad_x=False`` (a first layer, whose input needs no gradient) skips
    grad_x and returns an empty tensor ``x.new_empty(0)`` in its place; ``prev``
    (whose regression target is grad_x) must then be absent.

    ``sg_override`` is a test-only oracle: it replaces ĝ by a given gradient, so one
    step with the exact ∂L/∂h equals one SGD step of ordinary backprop.
    """
    if prev is not None and not compute_grad_x:
        raise ValueError("dni: compute_grad_x=False with prev: the previous layer's SG "
                         "regresses toward grad_x, so it must be computed")
    z = x @ weight.t()
    if bias is not None:
        z = z + bias
    h = activation_forward(z, activation)
    sg_raw = sg_predict(h, sg_weight, sg_bias, sg_table, labels)
    sg = sg_scale * sg_raw if sg_override is None else sg_override
    g = sg * activation_derivative(h, activation)
    grad_x = g @ weight if compute_grad_x else x.new_empty(0)  # before the update below
    d_weight = g.t() @ x
    d_bias = g.sum(0)
    if weight_grad is not None:
        weight_grad += d_weight
        if bias is not None:
            bias_grad += d_bias
    elif lr != 0:
        weight -= lr * d_weight
        if bias is not None:
            bias -= lr * d_bias
    prev_loss = torch.zeros((), dtype=x.dtype, device=x.device)
    if prev is not None:
        prev_loss = sg_update(
            prev.h,
            prev.sg_raw,
            grad_x,
            prev.sg_weight,
            prev.sg_bias,
            prev.sg_table,
            prev.labels,
            lr=prev.lr,
            sg_weight_grad=prev.sg_weight_grad,
            sg_bias_grad=prev.sg_bias_grad,
            sg_table_grad=prev.sg_table_grad,
        )
    return h, sg_raw, grad_x, prev_loss


# =====================================================================================
# LSTM with bootstrapped boundary gradients (the RNN half of DNI, paper §2.2 and §3.1)
# =====================================================================================
#
#   x [T, B, I] one window of T steps       h, c [B, H] state s = (h, c)
#   W_ih [4H, I], W_hh [4H, H], b [4H]       gates in torch.nn.LSTM order (i, f, g, o)
#
#   z_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ + b;   i, f, o = σ(z), g = tanh(z)
#   c_t = f ⊙ c_{t−1} + i ⊙ g;             h_t = o ⊙ tanh(c_t)
#
# A sequence is cut into windows; the state is carried across windows, detached. At
# the end of a window the SG model M (linear, on h or on (h, c): F = H or 2H) predicts
#   ĝ_end = sg_scale · M(s_end) ≈ ∂(all future losses)/∂s_end,
# BPTT over the window starts from ∂L/∂s_T = ĝ_end (the bootstrap; zero on the last
# window of a sequence) plus the in-window loss gradients, and yields the parameter
# gradients and δ_start = ∂L/∂s_0, the target that M(s_0) (the prediction the previous
# window bootstrapped from) regresses: sg_loss = (1/B) Σ ‖M(s_0) − δ_start‖².
# Optional aux task ("DNI + Aux"): a second linear head M_aux(s_0) predicts ĝ_end, the
# SG T steps ahead (the one the window bootstraps from, zero on a last window):
#   aux_loss = aux_loss_weight · (1/B) Σ ‖M_aux(s_0) − ĝ_end‖².
# Both regressions give gradients to the heads only: their targets are constants.


def lstm_cell(
    x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM step. Returns ``(h_t, c_t, gates)``, gates = the activated (i, f, g, o)."""
    z = x @ w_ih.t() + h @ w_hh.t()
    if bias is not None:
        z = z + bias
    zi, zf, zg, zo = z.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return h_new, c_new, torch.cat([i, f, g, o], dim=-1)


def lstm_window_forward(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, Tensor]:
    """T LSTM steps. Returns ``(hs, cs, gates)`` of shapes [T, B, H], [T, B, H], [T, B, 4H]."""
    h, c = h0, c0
    hs, cs, gates = [], [], []
    for x_t in x:
        h, c, g = lstm_cell(x_t, h, c, w_ih, w_hh, bias)
        hs.append(h)
        cs.append(c)
        gates.append(g)
    return torch.stack(hs), torch.stack(cs), torch.stack(gates)


def lstm_window_backward(
    grad_hs: Optional[Tensor],
    grad_cs: Optional[Tensor],
    grad_h_end: Optional[Tensor],
    grad_c_end: Optional[Tensor],
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    hs: Tensor,
    cs: Tensor,
    gates: Tensor,
    compute_grad_x: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BPTT over one window, written out. Returns
    ``(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias)``; grad_x is an empty
    tensor with ``compute_grad_x=False`` (x needs no gradient).

    ``grad_hs``/``grad_cs`` [T, B, H] are the in-window loss gradients (None = 0);
    ``grad_h_end``/``grad_c_end`` [B, H] the boundary gradient at s_T (the bootstrap).
    (grad_h0, grad_c0) is δ_start = ∂L/∂s_0.
    """
    steps, hidden = hs.shape[0], hs.shape[2]
    dh = torch.zeros_like(h0) if grad_h_end is None else grad_h_end.clone()
    dc = torch.zeros_like(c0) if grad_c_end is None else grad_c_end.clone()
    dz = torch.empty_like(gates)
    for t in reversed(range(steps)):
        if grad_hs is not None:
            dh = dh + grad_hs[t]
        if grad_cs is not None:
            dc = dc + grad_cs[t]
        i, f, g, o = gates[t].split(hidden, dim=-1)
        c_prev = c0 if t == 0 else cs[t - 1]
        tanh_c = torch.tanh(cs[t])
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz[t] = torch.cat(
            [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
             dh * tanh_c * o * (1 - o)], dim=-1)  # fmt: skip
        dh = dz[t] @ w_hh
        dc = dc * f
    h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])
    dz_flat = dz.reshape(-1, dz.shape[-1])
    grad_x = (dz_flat @ w_ih).reshape(x.shape) if compute_grad_x else x.new_empty(0)
    grad_w_ih = dz_flat.t() @ x.reshape(dz_flat.shape[0], x.shape[-1])
    grad_w_hh = dz_flat.t() @ h_prev.reshape(-1, hidden)
    return grad_x, dh, dc, grad_w_ih, grad_w_hh, dz_flat.sum(0)


def lstm_sg_input(h: Tensor, c: Tensor, sg_reads_cell: bool) -> Tensor:
    """What the SG model reads (and predicts the gradient of): h, or (h, c) as [.., 2H]."""
    return torch.cat([h, c], dim=-1) if sg_reads_cell else h


class LSTMDNIWindow(NamedTuple):
    """Everything one bootstrapped window produces (see :func:`lstm_dni_window`)."""

    hs: Tensor
    cs: Tensor
    sg_raw: Tensor  # [2, B, F]: M(s_0), M(s_T)
    grad_x: Tensor
    grad_h0: Tensor
    grad_c0: Tensor
    grad_w_ih: Tensor
    grad_w_hh: Tensor
    grad_bias: Tensor
    grad_sg_weight: Tensor
    grad_sg_bias: Optional[Tensor]
    grad_aux_weight: Optional[Tensor]
    grad_aux_bias: Optional[Tensor]
    sg_loss: Tensor
    aux_loss: Optional[Tensor]


def _regression_grads(inp: Tensor, raw: Tensor, target: Tensor, weight: float):
    """Gradients of weight·(1/B) Σ ‖raw − target‖² for a linear head raw = inp Aᵀ + a."""
    batch = max(inp.shape[0], 1)  # an empty batch: loss 0, zero gradients
    e = raw - target
    return (weight * (e * e).sum() / batch, weight * 2.0 / batch * (e.t() @ inp),
            weight * 2.0 / batch * e.sum(0))  # fmt: skip


@torch.no_grad()
def lstm_dni_window(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Optional[Tensor],
    sg_weight: Tensor,
    sg_bias: Optional[Tensor] = None,
    aux_weight: Optional[Tensor] = None,
    aux_bias: Optional[Tensor] = None,
    *,
    grad_hs: Optional[Tensor],
    grad_cs: Optional[Tensor] = None,
    sg_scale: float = 0.1,
    sg_reads_cell: bool = False,
    bootstrap: bool = True,
    aux_loss_weight: float = 1.0,
    sg_override: Optional[Tensor] = None,
) -> LSTMDNIWindow:
    """One bootstrapped truncated-BPTT window: forward, SG at both boundaries, BPTT
    from the in-window gradients ``grad_hs``/``grad_cs`` plus ĝ_end, δ_start, and the
    gradients of the SG regression (and of the aux regression when ``aux_weight`` is
    given). ``bootstrap=False`` marks a sequence's last window (ĝ_end = 0).

    ``sg_override`` is a test-only oracle: it replaces ĝ_end [B, F], so with the true
    future gradient the window's gradients are those of full BPTT.
    """
    hidden = h0.shape[1]
    hs, cs, gates = lstm_window_forward(x, h0, c0, w_ih, w_hh, bias)
    s_start = lstm_sg_input(h0, c0, sg_reads_cell)
    s_end = lstm_sg_input(hs[-1], cs[-1], sg_reads_cell)
    sg_raw = torch.stack([sg_predict(s_start, sg_weight, sg_bias), sg_predict(s_end, sg_weight, sg_bias)])
    g_end = sg_scale * sg_raw[1] if sg_override is None else sg_override
    if not bootstrap:  # the sequence ends here: no future losses
        g_end = torch.zeros_like(g_end)
    grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias = lstm_window_backward(
        grad_hs, grad_cs, g_end[:, :hidden], g_end[:, hidden:] if sg_reads_cell else None,
        x, h0, c0, w_ih, w_hh, hs, cs, gates,
    )  # fmt: skip
    delta_start = lstm_sg_input(grad_h0, grad_c0, sg_reads_cell)
    sg_loss, grad_sg_weight, grad_sg_bias = _regression_grads(s_start, sg_raw[0], delta_start, 1.0)
    aux_loss = grad_aux_weight = grad_aux_bias = None
    if aux_weight is not None:
        aux_raw = sg_predict(s_start, aux_weight, aux_bias)
        aux_loss, grad_aux_weight, grad_aux_bias = _regression_grads(
            s_start, aux_raw, g_end, aux_loss_weight)
    return LSTMDNIWindow(
        hs, cs, sg_raw, grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias,
        grad_sg_weight, grad_sg_bias if sg_bias is not None else None,
        grad_aux_weight, grad_aux_bias if aux_bias is not None else None, sg_loss, aux_loss,
    )  # fmt: skip
