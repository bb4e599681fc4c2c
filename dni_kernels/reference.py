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
    tensors and ``lr`` is unused.
    """
    batch = h.shape[0]
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
    else:
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
    sg_override: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One decoupled layer step. Returns ``(h, sg_raw, grad_x, prev_loss)``.

    * forward: h = φ(x Wᵀ + b)
    * SG: ĝ_raw = h Aᵀ + a + C[y], ĝ = sg_scale · ĝ_raw
    * g = ĝ ⊙ φ′(z); grad_x = g W (W before the update)
    * local update of W, b ("sgd" mode, step ``lr``) or accumulation into
      ``weight_grad``/``bias_grad`` ("grads" mode)
    * if ``prev`` is given: the lower layer's SG regression toward this ``grad_x``
      (see :func:`sg_update`); its loss is ``prev_loss`` (0 without ``prev``).

    ``sg_override`` is a test-only oracle: it replaces ĝ by a given gradient, so one
    step with the exact ∂L/∂h equals one SGD step of ordinary backprop.
    """
    z = x @ weight.t()
    if bias is not None:
        z = z + bias
    h = activation_forward(z, activation)
    sg_raw = sg_predict(h, sg_weight, sg_bias, sg_table, labels)
    sg = sg_scale * sg_raw if sg_override is None else sg_override
    g = sg * activation_derivative(h, activation)
    grad_x = g @ weight  # before the update below
    d_weight = g.t() @ x
    d_bias = g.sum(0)
    if weight_grad is not None:
        weight_grad += d_weight
        if bias is not None:
            bias_grad += d_bias
    else:
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
