"""The fused training step of a stack of DNILinear layers: one op launch per layer.

Forward runs `ops.linear_step` layer by layer; layer i's launch also regresses layer
i−1's SG toward the grad_x it computes (`prev=`). The first layer computes grad_x
only when the stack's input requires grad (`compute_grad_x`): otherwise nothing
reads it, and skipping it saves a GEMM. The top layer's SG target is the true
gradient the head sends back, so its regression (`ops.sg_update`) runs in the
backward of the autograd node that wraps the stack.

"grads" mode: the fused ops accumulate into fresh zero buffers during forward, and
the node's backward returns those buffers as the parameters' gradients, so autograd
adds them to .grad only when `backward()` runs: `zero_grad()` before the forward or
between forward and backward gives the same result. "sgd" mode: the ops update the
weights in place (the top SG in backward) and no gradient is returned; a group of
parameters frozen with requires_grad_(False) gets step 0.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import ops
from .recompute import recomputing

PARAMS_PER_LAYER = 5  # weight, bias, sg_weight, sg_bias, sg_table (None where absent)


class StackSpec(NamedTuple):
    """Everything static about a stack: constants to torch.compile."""

    activations: tuple
    sg_scales: tuple
    lrs: tuple
    lr_sgs: tuple
    conditioned: tuple
    grads_mode: bool
    backend: Optional[str]
    input_grad: bool  # the stack's input requires grad: the first layer computes grad_x


def _zeros_or_none(t: Optional[Tensor], wanted: bool) -> Optional[Tensor]:
    return torch.zeros_like(t) if wanted and t is not None else None


class _FusedStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: StackSpec, loss_sinks, x: Tensor, labels: Optional[Tensor], *params):
        grads: list = []  # per entry of params: the gradient backward returns
        lower_losses = []
        prev = None
        h = x
        for i, act in enumerate(spec.activations):
            w, b, sg_w, sg_b, sg_t = params[PARAMS_PER_LAYER * i : PARAMS_PER_LAYER * (i + 1)]
            w_grad = _zeros_or_none(w, spec.grads_mode)
            b_grad = _zeros_or_none(b, spec.grads_mode)
            y = labels if spec.conditioned[i] else None
            h_out, sg_raw, grad_x, prev_loss = ops.linear_step(
                h, w, b, sg_w, sg_b, sg_t, y, activation=act, sg_scale=spec.sg_scales[i],
                lr=spec.lrs[i], weight_grad=w_grad, bias_grad=b_grad, prev=prev,
                compute_grad_x=i > 0 or spec.input_grad, backend=spec.backend,
            )  # fmt: skip
            if i == 0:
                first_grad_x = grad_x
            else:
                lower_losses.append(prev_loss)
            sg_grads = [_zeros_or_none(t, spec.grads_mode) for t in (sg_w, sg_b, sg_t)]
            prev = ops.PrevSG(h_out, sg_raw, sg_w, sg_b, sg_t, y, spec.lr_sgs[i], *sg_grads)
            grads += [w_grad, b_grad, *sg_grads]
            h = h_out
        # The top layer's SG state, regressed in backward toward the head's gradient.
        ctx.save_for_backward(first_grad_x, prev.h, prev.sg_raw, prev.sg_weight, prev.sg_bias,
                              prev.sg_table, prev.labels, *grads)  # fmt: skip
        ctx.spec = spec
        ctx.loss_sinks = loss_sinks
        if loss_sinks is not None:
            for sink, loss in zip(loss_sinks, lower_losses):
                sink[0] = loss
        return h

    @staticmethod
    def backward(ctx, target: Tensor):
        first_grad_x, h, sg_raw, sg_w, sg_b, sg_t, labels, *grads = ctx.saved_tensors
        spec = ctx.spec
        top = slice(len(grads) - 3, len(grads))  # the top layer's sg_{weight,bias,table}
        sg_grads = [_zeros_or_none(t, spec.grads_mode) for t in (sg_w, sg_b, sg_t)]
        loss = ops.sg_update(h, sg_raw, target, sg_w, sg_b, sg_t, labels, lr=spec.lr_sgs[-1],
                             sg_weight_grad=sg_grads[0], sg_bias_grad=sg_grads[1],
                             sg_table_grad=sg_grads[2], backend=spec.backend)  # fmt: skip
        grads[top] = sg_grads
        if ctx.loss_sinks is not None:
            ctx.loss_sinks[-1][0] = loss
        grad_x = first_grad_x if spec.input_grad else None
        return (None, None, grad_x, None, *grads)


def _sgd_steps(layer) -> tuple[float, float]:
    """(lr, lr_sg) of an update="sgd" layer, whose kernel steps its parameters in place:
    0 for a group frozen with requires_grad_(False). Refused: a partly frozen group
    (one step size covers it), and tensors that are not the module's own parameters (a
    parametrization such as weight_norm, or pruning, computes `weight` from the real
    parameters, which an in-place step would never reach)."""
    s = layer.synthesizer
    steps = []
    for name, tensors, lr in (("weight and bias", (layer.weight, layer.bias), layer.lr),
                              ("synthesizer", (s.weight, s.bias, s.table), layer.lr_sg)):  # fmt: skip
        tensors = [t for t in tensors if t is not None]
        if not all(isinstance(t, nn.Parameter) for t in tensors):
            raise ValueError(f"update='sgd' steps a layer's parameters in place, but its {name} "
                             f"are computed from others (a parametrization such as weight_norm, "
                             f"or pruning?): use update='grads' with an optimizer")  # fmt: skip
        trainable = {t.requires_grad for t in tensors}
        if len(trainable) > 1:
            raise ValueError(f"update='sgd': the layer's {name} are partly frozen; freeze all "
                             f"of them or none (requires_grad_), or use update='grads'")  # fmt: skip
        steps.append(lr if trainable == {True} else 0.0)
    return steps[0], steps[1]


def fused_stack(layers: Sequence, x: Tensor, labels: Optional[Tensor], loss_sinks=None) -> Tensor:
    """One decoupled training step of `layers` (DNILinear, fusable, same update mode
    and backend); returns the top layer's output behind the autograd node above."""
    first = layers[0]
    if torch.is_autocast_enabled(x.device.type) and x.dtype != first.weight.dtype:
        # A half input from an autocast layer below: the fused layers run in their
        # parameters' dtype under autocast (the ops are not autocast), so cast it up,
        # differentiably (its gradient goes back down in the input's dtype).
        x = x.to(first.weight.dtype)
    if labels is None and any(layer.synthesizer.table is not None for layer in layers):
        raise ValueError("labels: a DNILinear is conditioned on classes (cDNI); call the "
                         "model with labels=<int64 tensor [batch]> in training")
    grads_mode = first.update == "grads"
    if grads_mode:
        steps = [(0.0, 0.0)] * len(layers)  # gradients only; the optimizer steps
    else:
        if recomputing():
            raise RuntimeError("update='sgd' layers step their weights during forward, and "
                               "torch.utils.checkpoint would step them again when it recomputes "
                               "it: use update='grads' under checkpointing")  # fmt: skip
        steps = [_sgd_steps(layer) for layer in layers]
    spec = StackSpec(
        activations=tuple(layer.activation for layer in layers),
        sg_scales=tuple(layer.sg_scale for layer in layers),
        lrs=tuple(lr for lr, _ in steps),
        lr_sgs=tuple(lr_sg for _, lr_sg in steps),
        conditioned=tuple(layer.synthesizer.table is not None for layer in layers),
        grads_mode=grads_mode,
        backend=first.backend,
        input_grad=x.requires_grad,
    )
    params = []
    for layer in layers:
        s = layer.synthesizer
        params += [layer.weight, layer.bias, s.weight, s.bias, s.table]
    return _FusedStack.apply(spec, loss_sinks, x, labels, *params)
