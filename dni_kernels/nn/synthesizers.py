"""Synthetic-gradient (SG) models: ĝ_raw = M(h, labels), an estimate of ∂L/∂h.

Every synthesizer zero-initialises its *whole* output layer, weights and bias (and
the cDNI class table): the first synthetic gradients are exactly 0, not a random
constant ~1/√H that swamps true gradients of ~1e-3 (the old library's pitfall,
which made cDNI diverge). Labels (cDNI) are an argument, never global state.

Only `LinearSynthesizer` is fused (dni_kernels.ops.linear_step); the MLP and conv
synthesizers run on the plain-PyTorch reference path.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


def _check_labels(labels: Optional[Tensor], num_classes: Optional[int], who: str) -> None:
    if num_classes is not None and labels is None:
        raise ValueError(
            f"labels: {who} is conditioned on {num_classes} classes (cDNI); call the "
            "model with labels=<int64 tensor [batch]> in training"
        )


class LinearSynthesizer(nn.Module):
    """ĝ_raw = h Aᵀ + a + C[y] (the paper's default), all zero-initialised. Fused."""

    def __init__(self, features: int, num_classes: Optional[int] = None, bias: bool = True):
        super().__init__()
        if features <= 0:
            raise ValueError(f"features must be positive, got {features}")
        if num_classes is not None and num_classes <= 0:
            raise ValueError(f"num_classes must be positive or None, got {num_classes}")
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(features, features))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None
        self.table = nn.Parameter(torch.zeros(num_classes, features)) if num_classes else None

    def forward(self, h: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        _check_labels(labels, self.num_classes, "LinearSynthesizer")
        out = h @ self.weight.t()
        if self.bias is not None:
            out = out + self.bias
        if self.table is not None:
            out = out + self.table[labels]
        return out


class _Conditioning(nn.Module):
    """Adds a learned per-class vector to a hidden layer: the same as concatenating a
    one-hot label to the SG input (the paper's cDNI), without building the one-hot."""

    def __init__(self, num_classes: int, features: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Parameter(torch.zeros(num_classes, features))

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        shape = (z.shape[0], -1) + (1,) * (z.dim() - 2)  # broadcast over conv maps
        return z + self.table[labels].view(shape)


class _HiddenLayersSynthesizer(nn.Module):
    """`hidden_layers` × (layer → BatchNorm → ReLU), then a zero-initialised output
    layer back to the input's size. BatchNorm inside the SG model follows the paper's
    MNIST recipe. cDNI conditions the first hidden layer."""

    def __init__(self, make_layer, make_norm, features: int, hidden: int, hidden_layers: int,
                 num_classes: Optional[int], batchnorm: bool):  # fmt: skip
        super().__init__()
        if hidden_layers not in (1, 2):
            raise ValueError(f"hidden_layers must be 1 or 2, got {hidden_layers}")
        self.num_classes = num_classes
        sizes = [features] + [hidden] * hidden_layers
        self.hidden = nn.ModuleList(make_layer(a, b) for a, b in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(
            (make_norm(hidden) if batchnorm else nn.Identity()) for _ in self.hidden
        )
        self.condition = _Conditioning(num_classes, hidden) if num_classes else None
        self.out = make_layer(hidden, features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        _check_labels(labels, self.num_classes, type(self).__name__)
        z = h
        for i, (layer, norm) in enumerate(zip(self.hidden, self.norms)):
            z = layer(z)
            if i == 0 and self.condition is not None:
                z = self.condition(z, labels)
            z = torch.relu(norm(z))
        return self.out(z)


class MLPSynthesizer(_HiddenLayersSynthesizer):
    """SG for features [B, F]: Linear hidden layers. Reference path (not fused)."""

    def __init__(self, features: int, hidden: int = 256, hidden_layers: int = 1,
                 num_classes: Optional[int] = None, batchnorm: bool = True):  # fmt: skip
        super().__init__(nn.Linear, nn.BatchNorm1d, features, hidden, hidden_layers,
                         num_classes, batchnorm)  # fmt: skip


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ConvSynthesizer(_HiddenLayersSynthesizer):
    """SG for feature maps [B, C, H, W]: 3×3 conv hidden layers. Reference path."""

    def __init__(self, channels: int, hidden_channels: int = 64, hidden_layers: int = 1,
                 num_classes: Optional[int] = None, batchnorm: bool = True):  # fmt: skip
        super().__init__(_conv3x3, nn.BatchNorm2d, channels, hidden_channels, hidden_layers,
                         num_classes, batchnorm)  # fmt: skip
