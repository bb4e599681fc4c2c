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

__all__ = ["PrevSG", "linear_step", "sg_update", "BACKENDS"]

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
    backend: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One fused decoupled-layer step; see :func:`dni_kernels.reference.linear_step`.

    Returns ``(h, sg_raw, grad_x, prev_loss)``. Updates ``weight``/``bias`` in place
    ("sgd" mode, step ``lr``) or, when ``weight_grad`` is given, adds the gradients to
    ``weight_grad``/``bias_grad`` ("grads" mode). With ``prev`` it also regresses the
    lower layer's SG toward the ``grad_x`` it computes, in the same call.
    ``backend``: see :func:`_resolve`.
    """
    p = prev if prev is not None else PrevSG(None, None, None)
    return _resolve("linear_step", x.device, backend)(
        x, weight, bias, weight_grad, bias_grad,
        sg_weight, sg_bias, sg_table, labels,
        activation, float(sg_scale), float(lr),
        p.h, p.sg_raw, p.labels,
        p.sg_weight, p.sg_bias, p.sg_table,
        p.sg_weight_grad, p.sg_bias_grad, p.sg_table_grad, float(p.lr),
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
    return _resolve("sg_update", h.device, backend)(
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
                          prev_lr):  # fmt: skip
        torch._check(x.dim() == 2, lambda: "dni: x must be 2-D")
        torch._check(weight.dim() == 2 and weight.shape[1] == x.shape[1],
                     lambda: "dni: weight must be [out_features, in_features]")  # fmt: skip
        out = weight.shape[0]
        torch._check(tuple(sg_weight.shape) == (out, out),
                     lambda: "dni: sg_weight must be [out_features, out_features]")  # fmt: skip
        if prev_h is not None:
            torch._check(prev_h.shape == x.shape, lambda: "dni: prev_h must match x")
        h = x.new_empty((x.shape[0], out))
        return h, torch.empty_like(h), torch.empty_like(x), x.new_empty(())

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
