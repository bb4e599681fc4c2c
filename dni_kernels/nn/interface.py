"""Cutting the graph after any module with a synthetic gradient (reference path).

`BackwardInterface(synthesizer)` placed after a module makes that module train on
the synthetic gradient ĝ = s · M(h, labels) instead of the true ∂L/∂h, and trains M
to regress the gradient that actually arrives at h. Plain PyTorch, any module.

Nothing is written to any .grad during the forward pass: the interface is an
autograd node, and both of its effects happen when `backward()` reaches it. So a
script may call `zero_grad()` before the forward pass or between forward and
backward, with the same result (the old library wrote gradients during forward,
and the second order silently discarded them).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


class _SyntheticGradient(torch.autograd.Function):
    """Identity on h. Its backward receives δ = ∂L/∂h from the layer above and
    returns to h the synthetic gradient s·ĝ_raw (so the module below trains on it,
    not on δ), and to ĝ_raw the gradient of the SG loss (1/B)‖ĝ_raw − δ‖², i.e.
    (2/B)(ĝ_raw − δ), which autograd carries into the synthesizer's parameters."""

    @staticmethod
    def forward(ctx, h: Tensor, sg_raw: Tensor, sg_scale: float, loss_sink: Optional[list]):
        ctx.save_for_backward(sg_raw)
        ctx.sg_scale = sg_scale
        ctx.loss_sink = loss_sink
        return h.view_as(h)

    @staticmethod
    def backward(ctx, target: Tensor):
        (sg_raw,) = ctx.saved_tensors
        error = sg_raw - target
        batch = target.shape[0]
        if ctx.loss_sink is not None:
            ctx.loss_sink[0] = (error * error).sum().detach() / batch
        return ctx.sg_scale * sg_raw, (2.0 / batch) * error, None, None


def synthetic_gradient(h: Tensor, synthesizer: nn.Module, labels: Optional[Tensor],
                       sg_scale: float = 1.0, loss_sink: Optional[list] = None) -> Tensor:  # fmt: skip
    """h, unchanged in value, behind a synthetic-gradient interface. The synthesizer
    sees h detached: the SG loss trains the synthesizer only, never the layer."""
    sg_raw = synthesizer(h.detach(), labels)
    return _SyntheticGradient.apply(h, sg_raw, float(sg_scale), loss_sink)


class BackwardInterface(nn.Module):
    """Decouples whatever module produced its input. Usage::

        h = encoder(x)
        h = interface(h, labels=y)     # encoder now trains on the synthetic gradient
        loss = criterion(decoder(h), y)
        loss.backward()                # trains decoder (true loss), synthesizer, encoder

    In eval mode or without grad it is the identity. Gradients land in .grad ("grads"
    mode): step them with any optimizer. `sg_loss` holds the last SG regression loss.
    """

    def __init__(self, synthesizer: nn.Module, sg_scale: float = 1.0):
        super().__init__()
        if not isinstance(synthesizer, nn.Module):
            raise TypeError(f"synthesizer must be an nn.Module, got {type(synthesizer).__name__}")
        self.synthesizer = synthesizer
        self.sg_scale = float(sg_scale)
        self._sg_loss: list = [None]

    @property
    def sg_loss(self) -> Optional[Tensor]:
        return self._sg_loss[0]

    def forward(self, h: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return h
        return synthetic_gradient(h, self.synthesizer, labels, self.sg_scale, self._sg_loss)
