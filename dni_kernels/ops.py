"""The fused ops: thin wrappers over torch.ops.dni.*, plus their fake kernels.

Each op takes the same arguments as its specification in dni_kernels/reference.py
(minus the test-only oracle) and returns the same values. The schemas, including
which arguments are updated in place, are declared once in csrc/ops.cpp.

These ops are training steps, not differentiable functions: they update weights in
place (or accumulate into .grad) and carry no autograd. Modules in dni_kernels.nn
connect them to autograd where DNI needs it.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

from ._extension import require_kernels
from .reference import PrevSG

__all__ = ["PrevSG", "linear_step", "sg_update", "BACKENDS",
           "lstm_cell", "lstm_window_forward", "lstm_window_backward", "lstm_dni_window"]

BACKENDS = ("auto", "cuda", "triton")


def _resolve(op: str, device: torch.device, backend: Optional[str]):
    """The kernel for `op` on `device`: `backend` argument, else $DNI_BACKEND, else
    "auto" (the C++ kernel: CPU on CPU, CUDA C++ on a GPU). "triton" selects the
    Triton twin `<op>_triton` (on CPU tensors only under TRITON_INTERPRET=1)."""
    backend = backend or os.environ.get("DNI_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"dni: backend must be one of {BACKENDS}, got {backend!r}")
    require_kernels(device if backend != "triton" else torch.device("cpu"))
    if backend == "triton":
        from . import triton as _triton  # noqa: F401  (registers the Triton kernels)

        return getattr(torch.ops.dni, op + "_triton").default
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"dni: backend='cuda' needs CUDA tensors, got {device}")
    return getattr(torch.ops.dni, op).default


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
    backend: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One fused decoupled-layer step; see :func:`dni_kernels.reference.linear_step`.

    Returns ``(h, sg_raw, grad_x, prev_loss)``. Updates ``weight``/``bias`` in place
    ("sgd" mode, step ``lr``) or, when ``weight_grad`` is given, adds the gradients to
    ``weight_grad``/``bias_grad`` ("grads" mode). With ``prev`` it also regresses the
    lower layer's SG toward the ``grad_x`` it computes, in the same call.
    ``compute_grad_x=False`` (no ``prev``) skips grad_x and returns an empty tensor
    in its place: for a first layer, whose input needs no gradient.
    ``backend``: see :func:`_resolve`.
    """
    p = prev if prev is not None else PrevSG(None, None, None)
    op = _resolve("linear_step", x.device, backend)
    with torch.no_grad():  # a training step, like optimizer.step(): nothing to record
        return op(
            x, weight, bias, weight_grad, bias_grad,
            sg_weight, sg_bias, sg_table, labels,
            activation, float(sg_scale), float(lr),
            p.h, p.sg_raw, p.labels,
            p.sg_weight, p.sg_bias, p.sg_table,
            p.sg_weight_grad, p.sg_bias_grad, p.sg_table_grad, float(p.lr),
            compute_grad_x,
        )  # fmt: skip


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
    backend: Optional[str] = None,
) -> Tensor:
    """Fused SG regression toward ``target``; see :func:`dni_kernels.reference.sg_update`.

    Returns the loss (1/B) Σ ‖sg_raw − target‖² as a 0-dim tensor.
    """
    op = _resolve("sg_update", h.device, backend)
    with torch.no_grad():  # a training step, like optimizer.step(): nothing to record
        return op(
            h, sg_raw, target, labels,
            sg_weight, sg_bias, sg_table,
            sg_weight_grad, sg_bias_grad, sg_table_grad, float(lr),
        )  # fmt: skip


# ---------------------------------------------------------------------------------
# Fake (meta) kernels: shapes only, so torch.compile(fullgraph=True) can trace.
# ---------------------------------------------------------------------------------


def _register_fakes() -> None:
    def _linear_step_fake(x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias,
                          sg_table, labels, activation, sg_scale, lr, prev_h, prev_sg_raw,
                          prev_labels, prev_sg_weight, prev_sg_bias, prev_sg_table,
                          prev_sg_weight_grad, prev_sg_bias_grad, prev_sg_table_grad,
                          prev_lr, compute_grad_x=True):  # fmt: skip
        torch._check(x.dim() == 2, lambda: "dni: x must be 2-D")
        torch._check(weight.dim() == 2 and weight.shape[1] == x.shape[1],
                     lambda: "dni: weight must be [out_features, in_features]")  # fmt: skip
        out = weight.shape[0]
        torch._check(tuple(sg_weight.shape) == (out, out),
                     lambda: "dni: sg_weight must be [out_features, out_features]")  # fmt: skip
        if prev_h is not None:
            torch._check(prev_h.shape == x.shape, lambda: "dni: prev_h must match x")
            torch._check(compute_grad_x, lambda: "dni: compute_grad_x=False with prev_*")
        h = x.new_empty((x.shape[0], out))
        grad_x = x.new_empty(x.shape) if compute_grad_x else x.new_empty((0,))
        return h, torch.empty_like(h), grad_x, x.new_empty(())

    def _sg_update_fake(h, sg_raw, target, labels, sg_weight, sg_bias, sg_table,
                        sg_weight_grad, sg_bias_grad, sg_table_grad, lr):  # fmt: skip
        torch._check(sg_raw.shape == h.shape and target.shape == h.shape,
                     lambda: "dni: h, sg_raw and target must share a shape")  # fmt: skip
        return h.new_empty(())

    for name in ("linear_step", "linear_step_triton"):
        torch.library.register_fake(f"dni::{name}")(_linear_step_fake)
    for name in ("sg_update", "sg_update_triton"):
        torch.library.register_fake(f"dni::{name}")(_sg_update_fake)


try:
    _register_fakes()
except RuntimeError:  # the compiled library is missing: ops raise on use instead
    pass


# =================================================================================
# LSTM windows (dni_kernels/reference.py, LSTM section). Unlike the training steps
# above these are differentiable: autograd is registered below, and each backward is
# made of custom ops (dni::lstm_window_backward, dni::sg_update), never raw kernels.
# =================================================================================


def lstm_window_forward(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Optional[Tensor] = None,
    *, backend: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """T fused LSTM steps; see :func:`dni_kernels.reference.lstm_window_forward`.

    Returns ``(hs, cs, gates)``; differentiable in hs and cs (gates are the saved
    activations, not differentiable). ``backend``: see :func:`_resolve`; the backward
    runs on the same backend.
    """
    op = _resolve("lstm_window_forward", x.device, backend)
    return _with_autograd(op)(x, h0, c0, w_ih, w_hh, bias)


def lstm_cell(
    x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Optional[Tensor] = None,
    *, backend: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One fused LSTM step (a window of one); see :func:`dni_kernels.reference.lstm_cell`."""
    hs, cs, gates = lstm_window_forward(x.unsqueeze(0), h, c, w_ih, w_hh, bias, backend=backend)
    return hs[0], cs[0], gates[0]


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
    *,
    backend: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fused BPTT over a window from in-window and boundary gradients; see
    :func:`dni_kernels.reference.lstm_window_backward`. Returns ``(grad_x, grad_h0,
    grad_c0, grad_w_ih, grad_w_hh, grad_bias)``; (grad_h0, grad_c0) is δ_start.
    ``compute_grad_x=False`` skips grad_x (an empty tensor is returned in its place)."""
    return _resolve("lstm_window_backward", x.device, backend)(
        grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih, w_hh, hs, cs, gates,
        bool(compute_grad_x))  # fmt: skip


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
    sg_scale: float = 0.1,
    sg_reads_cell: bool = False,
    bootstrap: bool = True,
    aux_loss_weight: float = 1.0,
    backend: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One bootstrapped window; see :func:`dni_kernels.reference.lstm_dni_window`.

    Returns ``(hs, cs, sg_raw)`` with sg_raw = [M(s_0), M(s_T)(, M_aux(s_0))]. The
    backward of any loss on hs/cs runs BPTT from that loss plus ĝ_end = sg_scale·M(s_T)
    (zero with ``bootstrap=False``), returns δ_start as the gradient of (h0, c0), and
    gives the SG (and aux) parameters the gradients of their regressions.
    ``backend``: see :func:`_resolve`; the backward runs on the same backend.
    """
    op = _resolve("lstm_dni_window", x.device, backend)
    hs, cs, _, sg_raw = _with_autograd(op)(
        x, h0, c0, w_ih, w_hh, bias, sg_weight, sg_bias, aux_weight, aux_bias,
        float(sg_scale), bool(sg_reads_cell), bool(bootstrap), float(aux_loss_weight))  # fmt: skip
    return hs, cs, sg_raw


# op -> a callable running it with its registered autograd (see _register_direct).
_DIRECT_AUTOGRAD: dict = {}


def _with_autograd(op):
    """`op` with the autograd registered for it, at the lowest per-call cost: the
    direct autograd.Function of _register_direct in eager mode, `op` itself (whose
    registration torch.compile reads) while compiling and under torch.func transforms
    (vmap batches the registered op; the direct Function has no vmap rule)."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return op
    return _DIRECT_AUTOGRAD.get(op, op)


def _register_direct(op, setup_context, backward) -> None:
    """Registers for `op` an autograd.Function made of the same setup_context and
    backward as its torch.library.register_autograd registration. torch.library's
    generic wrapper around those two functions rebuilds the op's argument list from
    its schema on every call: a (T=1, B=1, H=64) bootstrapped window's forward +
    backward took 292 µs through it and 231 µs through this Function (the window alone:
    180 and 153), a cost every window of a small model pays. Calls through
    torch.ops.dni.* keep the registered path."""

    class Direct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            # What the registered wrapper does: run the kernels below the Autograd key.
            with torch._C._AutoDispatchBelowAutograd():
                output = op(*inputs)
            setup_context(ctx, inputs, output)
            return output

        @staticmethod
        def backward(ctx, *grads):
            return backward(ctx, *grads)

    _DIRECT_AUTOGRAD[op] = Direct.apply


def _differentiable_once(backward):
    """`backward`, refusing backward(create_graph=True): the kernels it calls have no
    autograd of their own, so the gradients it returns cannot be differentiated again,
    and a double backward would silently treat them as constants."""

    def checked(ctx, *grads):
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            raise RuntimeError(
                "dni: the LSTM window ops are differentiable once: their gradients "
                "cannot be differentiated again (backward with create_graph=True, "
                "double backward, gradgradcheck)")
        return backward(ctx, *grads)

    return checked


def _sg_input(h: Tensor, c: Tensor, sg_reads_cell: bool) -> Tensor:
    return torch.cat([h, c], dim=-1) if sg_reads_cell else h


def _regression_grads(inp, raw, target, weight, bias, loss_weight, sg_update_op):
    """Gradients of loss_weight·(1/B) Σ ‖raw − target‖² for the head raw = inp Aᵀ + a,
    by the fused dni::sg_update (or its Triton twin) in "grads" mode into fresh
    buffers (it reads A, a only for their shapes there)."""
    grad_weight = torch.zeros_like(weight)
    grad_bias = torch.zeros_like(bias) if bias is not None else None
    sg_update_op(inp, raw, target, None, weight, bias, None,
                 grad_weight, grad_bias, None, 0.0)  # fmt: skip
    if loss_weight != 1.0:
        grad_weight = grad_weight * loss_weight
        grad_bias = grad_bias * loss_weight if grad_bias is not None else None
    return grad_weight, grad_bias


def _register_lstm() -> None:
    def _window_fake(x, h0, c0, w_ih, w_hh, bias):
        torch._check(x.dim() == 3, lambda: "dni: x must be 3-D [steps, batch, input_size]")
        torch._check(h0.dim() == 2 and h0.shape[0] == x.shape[1],
                     lambda: "dni: h0 must be [batch, hidden_size]")  # fmt: skip
        torch._check(w_hh.shape[0] == 4 * h0.shape[1],
                     lambda: "dni: w_hh must be [4 * hidden_size, hidden_size]")  # fmt: skip
        steps, batch, hidden = x.shape[0], x.shape[1], h0.shape[1]
        hs = x.new_empty((steps, batch, hidden))
        return hs, torch.empty_like(hs), x.new_empty((steps, batch, 4 * hidden))

    def _backward_fake(grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih, w_hh,
                       hs, cs, gates, compute_grad_x=True):  # fmt: skip
        torch._check(gates.shape[-1] == w_ih.shape[0], lambda: "dni: gates must be [T, B, 4H]")
        # Contiguous, like the kernels' results (empty_like would copy a transposed
        # input's strides).
        grad_x = x.new_empty(x.shape if compute_grad_x else (0,))
        return (grad_x,) + tuple(x.new_empty(t.shape) for t in (h0, c0, w_ih, w_hh)) + (
            w_ih.new_empty(w_ih.shape[0]),)  # fmt: skip

    def _dni_fake(x, h0, c0, w_ih, w_hh, bias, sg_weight, sg_bias, aux_weight, aux_bias,
                  sg_scale, sg_reads_cell, bootstrap, aux_loss_weight):  # fmt: skip
        feat = h0.shape[1] * (2 if sg_reads_cell else 1)
        torch._check(tuple(sg_weight.shape) == (feat, feat),
                     lambda: "dni: sg_weight must be [F, F] (F = H, or 2H reading (h, c))")  # fmt: skip
        hs, cs, gates = _window_fake(x, h0, c0, w_ih, w_hh, bias)
        rows = 3 if aux_weight is not None else 2
        return hs, cs, gates, x.new_empty((rows, x.shape[1], feat))

    for suffix in ("", "_triton"):  # each op and its Triton twin share a fake
        torch.library.register_fake(f"dni::lstm_window_forward{suffix}")(_window_fake)
        torch.library.register_fake(f"dni::lstm_window_backward{suffix}")(_backward_fake)
    torch.library.register_fake("dni::lstm_dni_window")(_dni_fake)
    torch.library.register_fake("dni::lstm_dni_window_triton")(_dni_fake)

    def _window_setup(ctx, inputs, output):
        x, h0, c0, w_ih, w_hh, bias = inputs
        hs, cs, gates = output
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(gates)
        # An output the loss does not reach (usually cs) comes back as None instead of
        # a [T, B, H] block of zeros; the backward kernels take None.
        ctx.set_materialize_grads(False)

    def _window_backward_of(backward_op):
        def _window_backward(ctx, grad_hs, grad_cs, _grad_gates):
            needs_grad_x = ctx.needs_input_grad[0]
            grads = backward_op(grad_hs, grad_cs, None, None, *ctx.saved_tensors, needs_grad_x)
            return ((grads[0] if needs_grad_x else None), *grads[1:5],
                    (grads[5] if ctx.has_bias else None))  # fmt: skip

        return _window_backward

    for suffix in ("", "_triton"):  # the backward runs on the forward's backend
        backward = _differentiable_once(
            _window_backward_of(getattr(torch.ops.dni, f"lstm_window_backward{suffix}").default))
        torch.library.register_autograd(f"dni::lstm_window_forward{suffix}", backward,
                                        setup_context=_window_setup)  # fmt: skip
        _register_direct(getattr(torch.ops.dni, f"lstm_window_forward{suffix}").default,
                         _window_setup, backward)  # fmt: skip

    def _dni_setup(ctx, inputs, output):
        (x, h0, c0, w_ih, w_hh, bias, sg_weight, sg_bias, aux_weight, aux_bias,
         ctx.sg_scale, ctx.sg_reads_cell, ctx.bootstrap, ctx.aux_loss_weight) = inputs  # fmt: skip
        hs, cs, gates, sg_raw = output
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, sg_raw, sg_weight,
                              sg_bias, aux_weight, aux_bias)  # fmt: skip
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(gates, sg_raw)
        ctx.set_materialize_grads(False)  # as in _window_setup

    def _dni_backward_of(suffix):
        """The bootstrapped window's backward, made of the ops `<name><suffix>`."""
        window_backward = getattr(torch.ops.dni, f"lstm_window_backward{suffix}").default
        sg_update = getattr(torch.ops.dni, f"sg_update{suffix}").default
        return lambda ctx, *grads: _dni_backward(ctx, *grads, window_backward, sg_update)

    def _dni_backward(ctx, grad_hs, grad_cs, _grad_gates, _grad_sg_raw, window_backward, sg_update):
        (x, h0, c0, w_ih, w_hh, hs, cs, gates, sg_raw, sg_weight, sg_bias, aux_weight,
         aux_bias) = ctx.saved_tensors  # fmt: skip
        hidden, reads_cell = h0.shape[1], ctx.sg_reads_cell
        # The bootstrap: BPTT starts from ĝ_end = sg_scale·M(s_T) at the window's end.
        g_end = ctx.sg_scale * sg_raw[1] if ctx.bootstrap else torch.zeros_like(sg_raw[1])
        needs_grad_x = ctx.needs_input_grad[0]  # else the window skips its grad_x product
        grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias = (
            window_backward(
                grad_hs, grad_cs, g_end[:, :hidden], g_end[:, hidden:] if reads_cell else None,
                x, h0, c0, w_ih, w_hh, hs, cs, gates, needs_grad_x))  # fmt: skip
        s_start = _sg_input(h0, c0, reads_cell)
        sg_grads = aux_grads = (None, None)
        if ctx.needs_input_grad[6] or ctx.needs_input_grad[7]:
            delta_start = _sg_input(grad_h0, grad_c0, reads_cell)
            sg_grads = _regression_grads(s_start, sg_raw[0], delta_start, sg_weight, sg_bias, 1.0,
                                         sg_update)  # fmt: skip
        if aux_weight is not None and (ctx.needs_input_grad[8] or ctx.needs_input_grad[9]):
            aux_grads = _regression_grads(s_start, sg_raw[2], g_end, aux_weight, aux_bias,
                                          ctx.aux_loss_weight, sg_update)  # fmt: skip
        return (grad_x if needs_grad_x else None, grad_h0, grad_c0, grad_w_ih, grad_w_hh,
                grad_bias if ctx.has_bias else None, *sg_grads, *aux_grads,
                None, None, None, None)  # fmt: skip

    for suffix in ("", "_triton"):  # the backward runs on the forward's backend
        backward = _differentiable_once(_dni_backward_of(suffix))
        torch.library.register_autograd(f"dni::lstm_dni_window{suffix}", backward,
                                        setup_context=_dni_setup)  # fmt: skip
        _register_direct(getattr(torch.ops.dni, f"lstm_dni_window{suffix}").default, _dni_setup,
                         backward)  # fmt: skip


try:
    _register_lstm()
except RuntimeError:  # the compiled library is missing: ops raise on use instead
    pass
