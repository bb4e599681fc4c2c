"""Triton kernels for dni::sg_update_triton: regress a linear SG model toward a
target (dni_kernels/reference.py::sg_update). linear_step's fused regression of the
previous layer's SG (its prev_* chain) reuses the pieces below.

Three paths, chosen by `_common.choose_path` (argument `path`, env DNI_TRITON_PATH):

* single launch (`_sg_update_single_kernel`): each program owns a block of batch
  rows; it forms e = ĝ_raw − δ for its rows and adds its partial sums (loss, eᵀh,
  Σe, the class rows of e) to a float32 workspace with atomics. The last program to
  arrive (`is_last_program`, an acq_rel counter) applies every update. The SG
  parameters are not read by the regression, so the updates could even go straight
  in; the workspace keeps one rounding per parameter (as the reference does) and
  works for half-precision parameters.
* tiled (`sg_regression_gemm_kernel`): one program per [BLOCK_M, BLOCK_N] tile of
  A computes its tile of eᵀh over the whole batch and updates that tile in place
  (read A, subtract, write: no F×F temporary); e is recomputed from ĝ_raw and δ while
  loading, never stored. The programs of the first tile column also own the loss,
  bias and class-table sums for their features.
* "cublas": the tiled kernel reading eᵀh from a float32 [F, F] buffer that torch.mm
  (cuBLAS on a GPU) computed first, e formed once in the activations' dtype.

Nothing here is autotuned: the kernels update weights in place, so running one
twice to time it would apply the update twice. Block sizes come from a small table.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl

from ._common import (
    DOT_DTYPES,
    check_device_and_dtype,
    choose_path,
    gather_labels,
    is_last_program,
    library_product,
    on_device,
    or_dummy,
    pow2,
    SINGLE_CHUNK,
    SINGLE_ROWS,
    SINGLE_WARPS,
    single_workspace,
    update_flat,
    update_tile,
)

# Workspace layout of the single-launch regression (float32 slots, `ws_sizes`):
# [loss | dA (F·F) | da (F) | dC (K·F)].


@triton.jit
def regress_rows(e, rows, row_mask, cols, col_mask, h_ptr, s_hb, s_hf, y_ptr, s_y, ws_ptr,
                 F, K, HAS_BIAS: tl.constexpr, CONDITIONED: tl.constexpr,
                 BLOCK_B: tl.constexpr, BLOCK_F: tl.constexpr, DOT_DTYPE: tl.constexpr):  # fmt: skip
    """Adds one row block's share for the feature columns `cols` to the workspace.
    e [BLOCK_B, BLOCK_F] = ĝ_raw − δ there, zero outside the masks."""
    tl.atomic_add(ws_ptr, tl.sum(tl.sum(e * e, axis=1), axis=0))
    # dA[cols, :] += eᵀ h, over h's columns in chunks.
    e_t = tl.trans(e).to(DOT_DTYPE)
    for j0 in range(0, F, BLOCK_F):
        hcols = j0 + tl.arange(0, BLOCK_F)
        hmask = hcols < F
        h = tl.load(h_ptr + rows[:, None] * s_hb + hcols[None, :] * s_hf,
                    mask=row_mask[:, None] & hmask[None, :], other=0.0)  # fmt: skip
        part = tl.dot(e_t, h.to(DOT_DTYPE), input_precision="ieee")
        tl.atomic_add(ws_ptr + 1 + cols[:, None] * F + hcols[None, :], part,
                      mask=col_mask[:, None] & hmask[None, :])  # fmt: skip
    if HAS_BIAS:
        tl.atomic_add(ws_ptr + 1 + F * F + cols, tl.sum(e, axis=0), mask=col_mask)
    if CONDITIONED:
        # Atomics also resolve rows of one block that share a label.
        y, valid = gather_labels(y_ptr, s_y, rows, row_mask, K)
        tl.atomic_add(ws_ptr + 1 + F * F + F + y[:, None] * F + cols[None, :], e,
                      mask=valid[:, None] & col_mask[None, :])  # fmt: skip


@triton.jit
def apply_regression(ws_ptr, A_ptr, a_ptr, C_ptr, loss_ptr, B, F, K, step,
                     HAS_BIAS: tl.constexpr, CONDITIONED: tl.constexpr,
                     BLOCK: tl.constexpr):  # fmt: skip
    """The last program: θ ← θ − step·(2/B)·dθ for A, a, C; loss = Σe² / B."""
    scaled_step = step * 2.0 / tl.maximum(B, 1)
    update_flat(A_ptr, ws_ptr + 1, F * F, scaled_step, BLOCK)
    if HAS_BIAS:
        update_flat(a_ptr, ws_ptr + 1 + F * F, F, scaled_step, BLOCK)
    if CONDITIONED:
        update_flat(C_ptr, ws_ptr + 1 + F * F + F, K * F, scaled_step, BLOCK)
    sum_sq = tl.load(ws_ptr, cache_modifier=".cg")
    tl.store(loss_ptr, (sum_sq / tl.maximum(B, 1)).to(loss_ptr.dtype.element_ty))


@triton.jit
def _sg_update_single_kernel(h_ptr, s_hb, s_hf, raw_ptr, s_rb, s_rf, t_ptr, s_tb, s_tf,
                             y_ptr, s_y, A_ptr, a_ptr, C_ptr, ws_ptr, counter_ptr, loss_ptr,
                             B, F, K, step,
                             HAS_BIAS: tl.constexpr, CONDITIONED: tl.constexpr,
                             BLOCK_B: tl.constexpr, BLOCK_F: tl.constexpr,
                             DOT_DTYPE: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    for f0 in range(0, F, BLOCK_F):
        cols = f0 + tl.arange(0, BLOCK_F)
        col_mask = cols < F
        mask = row_mask[:, None] & col_mask[None, :]
        raw = tl.load(raw_ptr + rows[:, None] * s_rb + cols[None, :] * s_rf, mask=mask, other=0.0)
        tgt = tl.load(t_ptr + rows[:, None] * s_tb + cols[None, :] * s_tf, mask=mask, other=0.0)
        e = (raw - tgt).to(tl.float32)
        regress_rows(e, rows, row_mask, cols, col_mask, h_ptr, s_hb, s_hf, y_ptr, s_y, ws_ptr,
                     F, K, HAS_BIAS, CONDITIONED, BLOCK_B, BLOCK_F, DOT_DTYPE)  # fmt: skip
    if is_last_program(counter_ptr):
        apply_regression(ws_ptr, A_ptr, a_ptr, C_ptr, loss_ptr, B, F, K, step,
                         HAS_BIAS, CONDITIONED, 1024)  # fmt: skip


@triton.jit
def sg_regression_gemm_kernel(p_ptr, h_ptr, s_hb, s_hf, raw_ptr, s_rb, s_rf, t_ptr, s_tb, s_tf,
                              y_ptr, s_y, A_ptr, a_ptr, C_ptr, ws_ptr, B, F, K, step,
                              HAS_BIAS: tl.constexpr, CONDITIONED: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                              BLOCK_K: tl.constexpr, DOT_DTYPE: tl.constexpr,
                              GIVEN: tl.constexpr):  # fmt: skip
    """Tile (m, n) of A ← A − step·(2/B)·eᵀh; column-0 programs also do Σe², a, C.
    ws = [loss | dC (K·F)], zero-filled; a program owns dC's columns of its tile.
    GIVEN: eᵀh is read from p_ptr ([F, F] float32, computed by the library)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < F
    scaled_step = step * 2.0 / tl.maximum(B, 1)
    tile = m_mask[:, None] & (offs_n < F)[None, :]
    if GIVEN:
        acc = tl.load(p_ptr + offs_m[:, None] * F + offs_n[None, :], mask=tile, other=0.0)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, B, BLOCK_K):
            rows = k0 + tl.arange(0, BLOCK_K)
            emask = m_mask[:, None] & (rows < B)[None, :]
            # eᵀ tile [features m, rows k], formed while loading.
            raw = tl.load(raw_ptr + offs_m[:, None] * s_rf + rows[None, :] * s_rb, mask=emask, other=0.0)
            tgt = tl.load(t_ptr + offs_m[:, None] * s_tf + rows[None, :] * s_tb, mask=emask, other=0.0)
            hmask = (rows < B)[:, None] & (offs_n < F)[None, :]
            h = tl.load(h_ptr + rows[:, None] * s_hb + offs_n[None, :] * s_hf, mask=hmask, other=0.0)
            acc = tl.dot((raw - tgt).to(DOT_DTYPE), h.to(DOT_DTYPE), acc, input_precision="ieee")
    update_tile(A_ptr, offs_m[:, None] * F + offs_n[None, :], tile, acc, scaled_step)
    if pid_n == 0:
        sum_sq = tl.zeros((BLOCK_M,), dtype=tl.float32)
        sum_e = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(0, B, BLOCK_K):
            rows = k0 + tl.arange(0, BLOCK_K)
            row_mask = rows < B
            mask = row_mask[:, None] & m_mask[None, :]
            raw = tl.load(raw_ptr + rows[:, None] * s_rb + offs_m[None, :] * s_rf, mask=mask, other=0.0)
            tgt = tl.load(t_ptr + rows[:, None] * s_tb + offs_m[None, :] * s_tf, mask=mask, other=0.0)
            e = (raw - tgt).to(tl.float32)
            sum_sq += tl.sum(e * e, axis=0)
            sum_e += tl.sum(e, axis=0)
            if CONDITIONED:
                y, valid = gather_labels(y_ptr, s_y, rows, row_mask, K)
                tl.atomic_add(ws_ptr + 1 + y[:, None] * F + offs_m[None, :], e,
                              mask=valid[:, None] & m_mask[None, :])  # fmt: skip
        tl.atomic_add(ws_ptr, tl.sum(sum_sq, axis=0))
        if HAS_BIAS:
            update_tile(a_ptr, offs_m, m_mask, sum_e, scaled_step)
        if CONDITIONED:
            # This program alone wrote these dC columns: once its own atomics are done
            # (barrier), it applies them to every class row.
            tl.debug_barrier()
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                kmask = (ks < K)[:, None] & m_mask[None, :]
                offs = ks[:, None] * F + offs_m[None, :]
                d = tl.load(ws_ptr + 1 + offs, mask=kmask, other=0.0, cache_modifier=".cg")
                update_tile(C_ptr, offs, kmask, d, scaled_step)


class SgArgs(NamedTuple):
    """One SG model as the kernels take it: activations, labels, the tensors the
    update goes into (parameters in "sgd" mode, .grad buffers in "grads" mode) and
    the step (lr, or −1 for "grads")."""

    h: torch.Tensor
    sg_raw: torch.Tensor
    labels: Optional[torch.Tensor]
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    table: Optional[torch.Tensor]
    step: float

    @staticmethod
    def build(h, sg_raw, labels, sg_weight, sg_bias, sg_table, sg_weight_grad,
              sg_bias_grad, sg_table_grad, lr) -> "SgArgs":  # fmt: skip
        if sg_weight_grad is not None:
            return SgArgs(h, sg_raw, labels, sg_weight_grad, sg_bias_grad, sg_table_grad, -1.0)
        return SgArgs(h, sg_raw, labels, sg_weight, sg_bias, sg_table, float(lr))

    @property
    def num_classes(self) -> int:
        return self.table.shape[0] if self.table is not None else 0

    def ws_sizes(self) -> int:
        """float32 slots of the single-launch workspace."""
        feat = self.h.shape[1]
        return 1 + feat * feat + feat + self.num_classes * feat

    def pointer_args(self) -> list:
        """h, ĝ_raw, labels (with strides) and the update targets, kernel order."""
        h, raw, w = self.h, self.sg_raw, self.weight
        y = or_dummy(self.labels, w)
        return [h, *h.stride(), raw, *raw.stride(), y, y.stride(0) if y.dim() else 0,
                w, or_dummy(self.bias, w), or_dummy(self.table, w)]  # fmt: skip


def launch_regression_gemm(sg: SgArgs, target: torch.Tensor, library: bool = False) -> torch.Tensor:
    """The tiled regression toward `target`; returns the float32 Σe² (a 1-element
    workspace that the caller turns into the loss). With `library` (the "cublas"
    path) eᵀh is computed by library_product first, e = ĝ_raw − target formed in the
    activations' dtype as the kernel forms it."""
    batch, feat = sg.h.shape
    k = sg.num_classes
    ws = torch.zeros(1 + k * feat, dtype=torch.float32, device=sg.h.device)
    block_m = block_n = pow2(feat, hi=64)
    block_k = pow2(batch, hi=32)
    h, hs0, hs1, raw, rs0, rs1, y, ys, a_w, a_b, a_c = sg.pointer_args()
    grid = (triton.cdiv(feat, block_m), triton.cdiv(feat, block_n))
    product = library_product((raw - target).t(), h) if library else ws
    sg_regression_gemm_kernel[grid](
        product, h, hs0, hs1, raw, rs0, rs1, target, *target.stride(), y, ys, a_w, a_b, a_c, ws,
        batch, feat, k, sg.step,
        HAS_BIAS=sg.bias is not None, CONDITIONED=k > 0,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        DOT_DTYPE=DOT_DTYPES[h.dtype], GIVEN=library, num_warps=4,
    )  # fmt: skip
    return ws[:1]


def _sg_update(h, sg_raw, target, labels, sg_weight, sg_bias, sg_table, sg_weight_grad,
               sg_bias_grad, sg_table_grad, lr, path=None) -> torch.Tensor:  # fmt: skip
    """The op's kernel (schema argument order)."""
    torch.ops.dni._check_sg_update.default(
        h, sg_raw, target, labels, sg_weight, sg_bias, sg_table,
        sg_weight_grad, sg_bias_grad, sg_table_grad, float(lr),
    )  # fmt: skip
    check_device_and_dtype(h)
    sg = SgArgs.build(h, sg_raw, labels, sg_weight, sg_bias, sg_table, sg_weight_grad,
                      sg_bias_grad, sg_table_grad, lr)  # fmt: skip
    batch, feat = h.shape
    programs = max(1, triton.cdiv(batch, SINGLE_ROWS))
    # The single launch holds SINGLE_CHUNK-wide row tiles, whatever the width.
    path = choose_path(path, min(feat, SINGLE_CHUNK), programs * feat * feat, work=batch * feat * feat)
    with on_device(h):
        if path == "single":
            return _launch_single(sg, target, programs)
        sum_sq = launch_regression_gemm(sg, target, library=path == "cublas")
        return (sum_sq[0] / max(batch, 1)).to(h.dtype)


def _launch_single(sg: SgArgs, target: torch.Tensor, programs: int) -> torch.Tensor:
    h = sg.h
    batch, feat = h.shape
    loss = torch.empty((), dtype=h.dtype, device=h.device)
    counter, ws = single_workspace(sg.ws_sizes(), h.device)
    h_, hs0, hs1, raw, rs0, rs1, y, ys, a_w, a_b, a_c = sg.pointer_args()
    _sg_update_single_kernel[(programs,)](
        h_, hs0, hs1, raw, rs0, rs1, target, *target.stride(), y, ys, a_w, a_b, a_c,
        ws, counter, loss, batch, feat, sg.num_classes, sg.step,
        HAS_BIAS=sg.bias is not None, CONDITIONED=sg.table is not None,
        BLOCK_B=SINGLE_ROWS, BLOCK_F=pow2(feat, hi=SINGLE_CHUNK), DOT_DTYPE=DOT_DTYPES[h.dtype],
        num_warps=SINGLE_WARPS,
    )  # fmt: skip
    return loss


def sg_update(h, sg_raw, target, sg_weight, sg_bias=None, sg_table=None, labels=None, *,
              lr, sg_weight_grad=None, sg_bias_grad=None, sg_table_grad=None,
              path: Optional[str] = None) -> torch.Tensor:  # fmt: skip
    """The Triton sg_update with the reference's signature, plus `path`
    ("auto" | "single" | "multi" | "cublas"; default $DNI_TRITON_PATH or "auto")."""
    return _sg_update(h, sg_raw, target, labels, sg_weight, sg_bias, sg_table,
                      sg_weight_grad, sg_bias_grad, sg_table_grad, lr, path)  # fmt: skip
