"""A stack of decoupled layers with an ordinary head trained on the true loss."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

from .fused_stack import fused_stack
from .layers import DNILinear, DNIModule
from .synthesizers import LinearSynthesizer


class DNISequential(nn.Module):
    """`layers` (DNI modules, or plain ones such as nn.Flatten), then `head`.

        model = DNISequential(DNILinear(64, 256), DNILinear(256, 256), head=nn.Linear(256, 10))
        loss = F.cross_entropy(model(x, labels=y), y)   # labels only needed for cDNI
        loss.backward(); optimizer.step()

    The head is ordinary: it trains on the true loss, and the gradient it sends into
    the last DNI layer is that layer's SG target. When every layer is a fused
    DNILinear with one update mode, a training step is one fused launch per layer:
    each launch also regresses the layer below's SG (`ops.linear_step(prev=...)`).
    Otherwise, or while a layer has forward or backward hooks (which the fused launches
    would skip: pruning, for one, is a forward pre-hook), each layer runs its own
    decoupled forward.
    """

    def __init__(self, *layers: nn.Module, head: nn.Module):
        super().__init__()
        if not layers:
            raise ValueError("layers: give at least one layer")
        if not isinstance(head, nn.Module):
            raise TypeError(f"head must be an nn.Module, got {type(head).__name__}")
        self.layers = nn.ModuleList(layers)
        self.head = head
        fusable = all(isinstance(m, DNILinear) and m.fused for m in layers)
        modes = {(m.update, m.backend) for m in layers if isinstance(m, DNILinear)}
        if len(modes) > 1:
            raise ValueError(f"layers: DNILinear layers must share update mode and backend, "
                             f"got {sorted(modes, key=str)}")  # fmt: skip
        self.fused = fusable

    def dni_layers(self) -> list:
        return [m for m in self.layers if isinstance(m, DNIModule)]

    def sg_losses(self) -> list:
        """Each DNI layer's last SG regression loss (after backward; eager mode)."""
        return [m.sg_loss for m in self.dni_layers()]

    def synthesizer_parameters(self) -> Iterator[nn.Parameter]:
        for m in self.dni_layers():
            yield from m.synthesizer.parameters()

    def model_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except the synthesizers' (for separate optimizer groups)."""
        sg = {id(p) for p in self.synthesizer_parameters()}
        return (p for p in self.parameters() if id(p) not in sg)

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        first = self.layers[0]
        if self.fused and first._decoupled() and not _hooked(self.layers):
            sinks = None if first._loss_sink() is None else [m._sg_loss for m in self.layers]
            h = fused_stack(list(self.layers), x, labels, sinks)
        else:
            h = x
            for m in self.layers:
                h = m(h, labels=labels) if isinstance(m, DNIModule) else m(h)
        return self.head(h)


def _hooked(layers) -> bool:
    """Whether any of `layers` has forward or backward hooks, its own or global ones."""
    global_hooks = (module_hooks._global_forward_pre_hooks, module_hooks._global_forward_hooks,
                    module_hooks._global_backward_pre_hooks, module_hooks._global_backward_hooks)  # fmt: skip
    return any(global_hooks) or any(
        m._forward_pre_hooks or m._forward_hooks or m._backward_pre_hooks or m._backward_hooks
        for m in layers)  # fmt: skip


class DNIMLP(DNISequential):
    """in_features → hidden_features… (DNILinear each) → Linear head to out_features.

    `conditioned_on=num_classes` makes it cDNI (pass labels= in training);
    `synthesizer=` a factory `(features, num_classes=...) -> module` for other SG
    models, e.g. MLPSynthesizer or functools.partial(MLPSynthesizer, hidden=128);
    other keyword arguments go to every DNILinear (activation, update, lr, ...).
    """

    def __init__(self, in_features: int, hidden_features: Sequence[int], out_features: int, *,
                 conditioned_on: Optional[int] = None, synthesizer=None, **layer_kwargs):  # fmt: skip
        if not hidden_features:
            raise ValueError("hidden_features: give at least one hidden layer size")
        sizes = [in_features, *hidden_features]
        make_synthesizer = synthesizer or LinearSynthesizer
        layers = [
            DNILinear(a, b, synthesizer=make_synthesizer(b, num_classes=conditioned_on), **layer_kwargs)
            for a, b in zip(sizes, sizes[1:])
        ]
        super().__init__(*layers, head=nn.Linear(sizes[-1], out_features))
