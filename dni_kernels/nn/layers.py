"""Decoupled layers: an ordinary layer with its own synthetic-gradient model.

In training (train mode, grad enabled) a layer updates itself from its synthetic
gradient, and returns its output behind an autograd node: the gradient that the
layer above later sends into it becomes the regression target of its SG. In eval
mode, or under torch.no_grad(), it is the ordinary layer.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._extension import LOAD_ERROR
from ..reference import ACTIVATIONS, activation_forward
from .fused_stack import fused_stack
from .interface import synthetic_gradient
from .synthesizers import ConvSynthesizer, LinearSynthesizer

UPDATE_MODES = ("grads", "sgd")


class DNIModule(nn.Module):
    """A module whose forward takes `labels=` (the cDNI context) and exposes `sg_loss`."""

    def __init__(self):
        super().__init__()
        self._sg_loss: list = [None]  # written when the SG regression runs (eager only)

    @property
    def sg_loss(self) -> Optional[Tensor]:
        """The last SG regression loss (1/B)‖ĝ_raw − δ‖², once backward has run."""
        return self._sg_loss[0]

    def _decoupled(self) -> bool:
        return self.training and torch.is_grad_enabled()

    def _loss_sink(self) -> Optional[list]:
        return None if torch.compiler.is_compiling() else self._sg_loss


class DNILinear(DNIModule):
    """h = φ(x Wᵀ + b), decoupled by a synthesizer (default: zero-initialised linear).

    update="grads" (default): W, b and the SG's gradients land in .grad when
    `backward()` runs; step them with any torch.optim optimizer. update="sgd": the
    fused kernel updates W, b in place during forward with step `lr`, and the SG with
    step `lr_sg` (0 freezes it: the paper's No-Bprop baseline); fastest.

    Fused path (one `ops.linear_step` launch): a LinearSynthesizer and no batchnorm.
    Otherwise, or with fused=False, the plain-PyTorch reference path ("grads" only).
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "relu", *,
                 synthesizer: Optional[nn.Module] = None, conditioned_on: Optional[int] = None,
                 bias: bool = True, batchnorm: bool = False, sg_scale: float = 1.0,
                 update: str = "grads", lr: Optional[float] = None,
                 lr_sg: Optional[float] = None, fused: Optional[bool] = None,
                 backend: Optional[str] = None):  # fmt: skip
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in_features and out_features must be positive, got "
                             f"{in_features}, {out_features}")  # fmt: skip
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if update not in UPDATE_MODES:
            raise ValueError(f"update must be one of {UPDATE_MODES}, got {update!r}")
        if update == "sgd" and (lr is None or lr_sg is None):
            raise ValueError("update='sgd' needs lr (layer step) and lr_sg (SG step; 0 freezes it)")
        if synthesizer is not None and conditioned_on is not None:
            raise ValueError("conditioned_on: give it to the synthesizer you pass instead")
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.sg_scale = float(sg_scale)
        self.update, self.lr, self.lr_sg, self.backend = update, lr, lr_sg, backend
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.norm = nn.BatchNorm1d(out_features) if batchnorm else None
        self.synthesizer = synthesizer or LinearSynthesizer(out_features, conditioned_on)
        self.reset_parameters()
        fusable = isinstance(self.synthesizer, LinearSynthesizer) and not batchnorm
        if fused and not fusable:
            raise ValueError("fused=True needs a LinearSynthesizer and batchnorm=False")
        self.fused = (fusable and LOAD_ERROR is None) if fused is None else fused
        if update == "sgd" and not self.fused:
            raise ValueError("update='sgd' runs only on the fused path (LinearSynthesizer, "
                             "no batchnorm, kernels built); use update='grads' with an optimizer")  # fmt: skip

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation; the synthesizer keeps its zero output layer."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward_plain(self, x: Tensor) -> Tensor:
        """The ordinary layer, with autograd: eval mode, and the reference path."""
        z = F.linear(x, self.weight, self.bias)
        if self.norm is not None:
            z = self.norm(z)
        return activation_forward(z, self.activation)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        if not self._decoupled():
            return self.forward_plain(x)
        if self.fused:
            sink = self._loss_sink()
            return fused_stack([self], x, labels, None if sink is None else [sink])
        return synthetic_gradient(self.forward_plain(x), self.synthesizer, labels,
                                  self.sg_scale, self._loss_sink())  # fmt: skip

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, activation={self.activation!r}, "
                f"update={self.update!r}, fused={self.fused}")  # fmt: skip


class DNIConv2d(DNIModule):
    """φ(BN(conv(x))) decoupled by a ConvSynthesizer. Reference path only: no fused conv
    kernel exists; gradients land in .grad when backward runs ("grads" mode)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, activation: str = "relu", *,
                 synthesizer: Optional[nn.Module] = None, conditioned_on: Optional[int] = None,
                 batchnorm: bool = True, sg_scale: float = 1.0):  # fmt: skip
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if synthesizer is not None and conditioned_on is not None:
            raise ValueError("conditioned_on: give it to the synthesizer you pass instead")
        self.activation = activation
        self.sg_scale = float(sg_scale)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm = nn.BatchNorm2d(out_channels) if batchnorm else None
        self.synthesizer = synthesizer or ConvSynthesizer(out_channels, num_classes=conditioned_on)

    def forward_plain(self, x: Tensor) -> Tensor:
        z = self.conv(x)
        if self.norm is not None:
            z = self.norm(z)
        return activation_forward(z, self.activation)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        h = self.forward_plain(x)
        if not self._decoupled():
            return h
        return synthetic_gradient(h, self.synthesizer, labels, self.sg_scale, self._loss_sink())
