"""Triton kernels for dni::linear_step_triton: one decoupled-layer step
(dni_kernels/reference.py::linear_step), optionally with the previous layer's SG
regression toward this step's grad_x (the prev_* chain).

Three paths, chosen by `_common.choose_path` (argument `path`, env DNI_TRITON_PATH;
"auto" = "cublas" from 2³⁰ multiply-adds in the largest product (B·I·O, B·O² or,
chained, B·I²), else single launch for out_features ≤ 64 while programs × (O·I + I·I
with the chain) ≤ 2²⁰ atomically added elements, else tiled; see _common.py):

* single launch (`_linear_step_single_kernel`, for small layers, where launch
  latency dominates): one program per block of batch rows computes z, h, ĝ, g and
  (unless compute_grad_x is False) grad_x for its rows — every stage is row-local —
  plus its rows' share of gᵀx, Σg and, with the chain, of the previous SG's
  regression sums. Those shares are added to a float32 workspace with
  `tl.atomic_add`. W cannot be updated as the shares arrive: other programs still
  read W for their grad_x = g·W (which must see W before the update). So the update
  waits for the last program: each program bumps an arrival counter once it is done
  (`is_last_program`), and the one that sees count = programs − 1 applies W, b and
  the previous SG's updates from the workspace.
  Memory ordering: a `tl.debug_barrier()` first makes every thread of the program
  finish its atomics and its reads of W; the counter atomic is acq_rel at GPU scope,
  so it releases them and, in the last program, acquires everyone's; a second
  barrier orders that program's other threads after the acquire, and the workspace
  is read with .cg (through L2, never a stale L1 line). Besides the kernel, the only
  device work is the zero-fill of that workspace (counter included).
* tiled (multi-launch): GEMM kernels with fused epilogues, in stream order —
  `_forward_kernel` h = φ(xWᵀ + b); `_sg_kernel` ĝ_raw = hAᵀ + a + C[y] and
  g = s·ĝ_raw⊙φ′ (stored in the activations' dtype); `_grad_x_kernel` grad_x = gW
  (not launched without compute_grad_x);
  `_weight_update_kernel` W ← W − lr·gᵀx tile by tile in its epilogue (read the W
  tile, subtract, write back: no O×I temporary), after grad_x has read W; its first
  tile column also reduces Σg for b; then, with the chain,
  sg_update.sg_regression_gemm_kernel toward grad_x.
* "cublas": the tiled kernels, each taking its product from a float32 buffer that
  torch.mm (cuBLAS on a GPU) filled just before it (`product_tile`'s GIVEN form)
  instead of running its tl.dot loop; the epilogues are the same code. The update
  product gᵀx is then an O×I float32 temporary. Tested on an H100 (README, GPU).

Activation, bias, conditioning, chain and grad_x are tl.constexpr; the update mode
is not a branch at all ("grads" mode passes the .grad buffers as update targets with
step −1). Nothing is autotuned (the kernels update weights in place; timing a config
would apply the update again): block sizes come from a small table.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ..reference import PrevSG
from ._common import (
    ACTIVATION_IDS,
    DOT_DTYPES,
    activation_derivative,
    activation_forward,
    check_device_and_dtype,
    choose_path,
    gather_labels,
    is_last_program,
    largest_product_work,
    library_product,
    mma,
    on_device,
    or_dummy,
    pow2,
    product_tile,
    SINGLE_CHUNK,
    SINGLE_ROWS,
    SINGLE_WARPS,
    single_workspace,
    update_flat,
    update_tile,
)
from .sg_update import SgArgs, apply_regression, launch_regression_gemm, regress_rows


@triton.jit
def _sg_epilogue(acc, rows, row_mask, outs, out_mask, a_ptr, C_ptr, y_ptr, s_y, O, K,
                 HAS_SG_BIAS: tl.constexpr, CONDITIONED: tl.constexpr):  # fmt: skip
    """ĝ_raw = (h Aᵀ) + a + C[y] for a [rows, outs] tile."""
    if HAS_SG_BIAS:
        acc += tl.load(a_ptr + outs, mask=out_mask, other=0.0).to(tl.float32)[None, :]
    if CONDITIONED:
        y, valid = gather_labels(y_ptr, s_y, rows, row_mask, K)
        acc += tl.load(C_ptr + y[:, None] * O + outs[None, :],
                       mask=valid[:, None] & out_mask[None, :], other=0.0).to(tl.float32)  # fmt: skip
    return acc


@triton.jit
def _linear_step_single_kernel(
    x_ptr, s_xb, s_xi, w_ptr, b_ptr, A_ptr, a_ptr, C_ptr, y_ptr, s_y,
    w_dst, b_dst, h_ptr, raw_ptr, gx_ptr, ws_ptr, counter_ptr, loss_ptr,
    ph_ptr, s_phb, s_phi, praw_ptr, s_prb, s_pri, py_ptr, s_py, pA_dst, pa_dst, pC_dst, pws_ptr,
    B, I, O, K, PK, sg_scale, step, prev_step,
    ACT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SG_BIAS: tl.constexpr,
    CONDITIONED: tl.constexpr, CHAIN: tl.constexpr, PREV_HAS_BIAS: tl.constexpr,
    PREV_CONDITIONED: tl.constexpr, GRAD_X: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, DOT_DTYPE: tl.constexpr,
):  # fmt: skip
    """Workspaces: ws = [dW (O·I) | db (O)], pws = sg_update's single-launch layout.
    CHAIN implies GRAD_X (the chain regresses toward grad_x)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < B
    outs = tl.arange(0, BLOCK_O)
    out_mask = outs < O
    tile = row_mask[:, None] & out_mask[None, :]
    act_dtype = h_ptr.dtype.element_ty
    # h = φ(x Wᵀ + b), rounded once to the activations' dtype (what is stored is used).
    z = mma(x_ptr, s_xb, s_xi, w_ptr, 1, I, rows, outs, B, O, I,
            BLOCK_B, BLOCK_O, BLOCK_I, DOT_DTYPE)  # fmt: skip
    if HAS_BIAS:
        z += tl.load(b_ptr + outs, mask=out_mask, other=0.0).to(tl.float32)[None, :]
    h = tl.where(tile, activation_forward(z, ACT), 0.0).to(act_dtype)
    tl.store(h_ptr + rows[:, None] * O + outs[None, :], h, mask=tile)
    # ĝ_raw = h Aᵀ + a + C[y]; A is [O, O], read as Aᵀ.
    a_t = tl.load(A_ptr + outs[:, None] + outs[None, :] * O,
                  mask=out_mask[:, None] & out_mask[None, :], other=0.0)  # fmt: skip
    raw = tl.dot(h.to(DOT_DTYPE), a_t.to(DOT_DTYPE), input_precision="ieee")
    raw = _sg_epilogue(raw, rows, row_mask, outs, out_mask, a_ptr, C_ptr, y_ptr, s_y, O, K,
                       HAS_SG_BIAS, CONDITIONED).to(act_dtype)  # fmt: skip
    tl.store(raw_ptr + rows[:, None] * O + outs[None, :], raw, mask=tile)
    g = sg_scale * raw.to(tl.float32) * activation_derivative(h.to(tl.float32), ACT)
    g = tl.where(tile, g, 0.0)
    if HAS_BIAS:
        tl.atomic_add(ws_ptr + O * I + outs, tl.sum(g, axis=0), mask=out_mask)
    g_dot = g.to(DOT_DTYPE)
    g_t = tl.trans(g_dot)
    # Per chunk of input features: this block's gᵀx, grad_x = g W, and the chain.
    for i0 in range(0, I, BLOCK_I):
        ins = i0 + tl.arange(0, BLOCK_I)
        in_mask = ins < I
        in_tile = row_mask[:, None] & in_mask[None, :]
        x = tl.load(x_ptr + rows[:, None] * s_xb + ins[None, :] * s_xi, mask=in_tile, other=0.0)
        d_w = tl.dot(g_t, x.to(DOT_DTYPE), input_precision="ieee")
        tl.atomic_add(ws_ptr + outs[:, None] * I + ins[None, :], d_w,
                      mask=out_mask[:, None] & in_mask[None, :])  # fmt: skip
        if GRAD_X:
            w = tl.load(w_ptr + outs[:, None] * I + ins[None, :],
                        mask=out_mask[:, None] & in_mask[None, :], other=0.0)  # fmt: skip
            gx = tl.dot(g_dot, w.to(DOT_DTYPE), input_precision="ieee").to(act_dtype)
            tl.store(gx_ptr + rows[:, None] * I + ins[None, :], gx, mask=in_tile)
            if CHAIN:
                p_raw = tl.load(praw_ptr + rows[:, None] * s_prb + ins[None, :] * s_pri,
                                mask=in_tile, other=0.0)  # fmt: skip
                e = tl.where(in_tile, (p_raw - gx).to(tl.float32), 0.0)
                regress_rows(e, rows, row_mask, ins, in_mask, ph_ptr, s_phb, s_phi, py_ptr,
                             s_py, pws_ptr, I, PK, PREV_HAS_BIAS, PREV_CONDITIONED, BLOCK_B,
                             BLOCK_I, DOT_DTYPE)  # fmt: skip
    if is_last_program(counter_ptr):
        update_flat(w_dst, ws_ptr, O * I, step, 1024)
        if HAS_BIAS:
            update_flat(b_dst, ws_ptr + O * I, O, step, 1024)
        if CHAIN:
            apply_regression(pws_ptr, pA_dst, pa_dst, pC_dst, loss_ptr, B, I, PK, prev_step,
                             PREV_HAS_BIAS, PREV_CONDITIONED, 1024)  # fmt: skip
        else:
            tl.store(loss_ptr, 0.0)


@triton.jit
def _forward_kernel(p_ptr, x_ptr, s_xb, s_xi, w_ptr, b_ptr, h_ptr, B, I, O,
                    ACT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, DOT_DTYPE: tl.constexpr,
                    GIVEN: tl.constexpr):  # fmt: skip
    """h = φ(x Wᵀ + b), tile [batch rows m, outputs n]. GIVEN: x Wᵀ is read from p_ptr
    (product_tile), as in the three kernels below."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    outs = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    z = product_tile(p_ptr, x_ptr, s_xb, s_xi, w_ptr, 1, I, rows, outs, B, O, I,
                     BLOCK_M, BLOCK_N, BLOCK_K, DOT_DTYPE, GIVEN)  # fmt: skip
    if HAS_BIAS:
        z += tl.load(b_ptr + outs, mask=outs < O, other=0.0).to(tl.float32)[None, :]
    tile = (rows < B)[:, None] & (outs < O)[None, :]
    tl.store(h_ptr + rows[:, None] * O + outs[None, :], activation_forward(z, ACT), mask=tile)


@triton.jit
def _sg_kernel(p_ptr, h_ptr, A_ptr, a_ptr, C_ptr, y_ptr, s_y, raw_ptr, g_ptr, B, O, K, sg_scale,
               ACT: tl.constexpr, HAS_SG_BIAS: tl.constexpr, CONDITIONED: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
               DOT_DTYPE: tl.constexpr, GIVEN: tl.constexpr):  # fmt: skip
    """ĝ_raw = h Aᵀ + a + C[y] and g = s·ĝ_raw⊙φ′(h), tile [rows m, outputs n]."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    outs = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < B
    out_mask = outs < O
    tile = row_mask[:, None] & out_mask[None, :]
    acc = product_tile(p_ptr, h_ptr, O, 1, A_ptr, 1, O, rows, outs, B, O, O,
                       BLOCK_M, BLOCK_N, BLOCK_K, DOT_DTYPE, GIVEN)  # fmt: skip
    raw = _sg_epilogue(acc, rows, row_mask, outs, out_mask, a_ptr, C_ptr, y_ptr, s_y, O, K,
                       HAS_SG_BIAS, CONDITIONED).to(raw_ptr.dtype.element_ty)  # fmt: skip
    offs = rows[:, None] * O + outs[None, :]
    tl.store(raw_ptr + offs, raw, mask=tile)
    h = tl.load(h_ptr + offs, mask=tile, other=0.0).to(tl.float32)
    g = sg_scale * raw.to(tl.float32) * activation_derivative(h, ACT)
    tl.store(g_ptr + offs, g, mask=tile)


@triton.jit
def _grad_x_kernel(p_ptr, g_ptr, w_ptr, gx_ptr, B, I, O, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, DOT_DTYPE: tl.constexpr,
                   GIVEN: tl.constexpr):  # fmt: skip
    """grad_x = g W (W before its update: this launch precedes the update's)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ins = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = product_tile(p_ptr, g_ptr, O, 1, w_ptr, I, 1, rows, ins, B, I, O,
                       BLOCK_M, BLOCK_N, BLOCK_K, DOT_DTYPE, GIVEN)  # fmt: skip
    tile = (rows < B)[:, None] & (ins < I)[None, :]
    tl.store(gx_ptr + rows[:, None] * I + ins[None, :], acc, mask=tile)


@triton.jit
def _weight_update_kernel(p_ptr, g_ptr, x_ptr, s_xb, s_xi, w_dst, b_dst, B, I, O, step,
                          HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          DOT_DTYPE: tl.constexpr, GIVEN: tl.constexpr):  # fmt: skip
    """W tile ← W tile − step·(gᵀx) tile; the first tile column also does b ← b − step·Σg."""
    outs = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ins = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    out_mask = outs < O
    acc = product_tile(p_ptr, g_ptr, 1, O, x_ptr, s_xb, s_xi, outs, ins, O, I, B,
                       BLOCK_M, BLOCK_N, BLOCK_K, DOT_DTYPE, GIVEN)  # fmt: skip
    tile = out_mask[:, None] & (ins < I)[None, :]
    update_tile(w_dst, outs[:, None] * I + ins[None, :], tile, acc, step)
    if HAS_BIAS:
        if tl.program_id(1) == 0:
            d_b = tl.zeros((BLOCK_M,), dtype=tl.float32)
            for k0 in range(0, B, BLOCK_K):
                rows = k0 + tl.arange(0, BLOCK_K)
                g = tl.load(g_ptr + rows[:, None] * O + outs[None, :],
                            mask=(rows < B)[:, None] & out_mask[None, :], other=0.0)  # fmt: skip
                d_b += tl.sum(g.to(tl.float32), axis=0)
            update_tile(b_dst, outs, out_mask, d_b, step)


def _gemm_blocks(m: int, n: int, k: int) -> tuple[int, int, int]:
    """Block table of the tiled path: 64×64 tiles, K steps of 32, shrunk (to ≥ 16) for
    small dimensions so that masked lanes do not dominate."""
    return pow2(m, hi=64), pow2(n, hi=64), pow2(k, hi=32)


def _launch_multi(x, weight, bias, sg_weight, sg_bias, sg_table, labels, act, sg_scale,
                  w_dst, b_dst, step, h, raw, grad_x, library=False):  # fmt: skip
    """The tiled path; with `library` (the "cublas" path) each product is computed by
    library_product just before the kernel whose epilogue takes it (stream order: the
    forward kernel's h is ready for the SG product, grad_x reads W before the update)."""
    batch, in_f = x.shape
    out_f = weight.shape[0]
    dot = DOT_DTYPES[x.dtype]
    k = sg_table.shape[0] if sg_table is not None else 0
    y = or_dummy(labels, weight)
    g = torch.empty_like(h)

    def given(a, b):  # the product for a kernel's p_ptr; a dummy on the tiled path
        return library_product(a, b) if library else h

    bm, bn, bk = _gemm_blocks(batch, out_f, in_f)
    grid = (triton.cdiv(batch, bm), triton.cdiv(out_f, bn))
    _forward_kernel[grid](given(x, weight.t()), x, *x.stride(), weight, or_dummy(bias, weight), h,
                          batch, in_f, out_f, ACT=act, HAS_BIAS=bias is not None, BLOCK_M=bm,
                          BLOCK_N=bn, BLOCK_K=bk, DOT_DTYPE=dot, GIVEN=library)  # fmt: skip
    bm, bn, bk = _gemm_blocks(batch, out_f, out_f)
    grid = (triton.cdiv(batch, bm), triton.cdiv(out_f, bn))
    _sg_kernel[grid](given(h, sg_weight.t()), h, sg_weight, or_dummy(sg_bias, weight),
                     or_dummy(sg_table, weight), y, y.stride(0), raw, g, batch, out_f, k, sg_scale,
                     ACT=act, HAS_SG_BIAS=sg_bias is not None, CONDITIONED=k > 0,
                     BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, DOT_DTYPE=dot, GIVEN=library)  # fmt: skip
    if grad_x is not None:
        bm, bn, bk = _gemm_blocks(batch, in_f, out_f)
        grid = (triton.cdiv(batch, bm), triton.cdiv(in_f, bn))
        _grad_x_kernel[grid](given(g, weight), g, weight, grad_x, batch, in_f, out_f,
                             BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, DOT_DTYPE=dot, GIVEN=library)  # fmt: skip
    bm, bn, bk = _gemm_blocks(out_f, in_f, batch)
    grid = (triton.cdiv(out_f, bm), triton.cdiv(in_f, bn))
    _weight_update_kernel[grid](given(g.t(), x), g, x, *x.stride(), w_dst, or_dummy(b_dst, weight),
                                batch, in_f, out_f, step, HAS_BIAS=bias is not None,
                                BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, DOT_DTYPE=dot,
                                GIVEN=library)  # fmt: skip


def _launch_single(x, weight, bias, sg_weight, sg_bias, sg_table, labels, act, sg_scale,
                   w_dst, b_dst, step, h, raw, grad_x, prev: Optional[SgArgs], loss):  # fmt: skip
    batch, in_f = x.shape
    out_f = weight.shape[0]
    n_layer = out_f * in_f + out_f
    counter, ws = single_workspace(n_layer + (prev.ws_sizes() if prev else 0), x.device)
    y = or_dummy(labels, weight)
    k = sg_table.shape[0] if sg_table is not None else 0
    # Without the chain the prev_* pointers are never touched: pass the layer's own.
    p = prev or SgArgs(x, x, None, weight, None, None, 0.0)
    ph, phs0, phs1, praw, prs0, prs1, py, pys, pa_w, pa_b, pa_c = p.pointer_args()
    _linear_step_single_kernel[(max(1, triton.cdiv(batch, SINGLE_ROWS)),)](
        x, *x.stride(), weight, or_dummy(bias, weight), sg_weight,
        or_dummy(sg_bias, weight), or_dummy(sg_table, weight), y, y.stride(0),
        w_dst, or_dummy(b_dst, weight), h, raw, or_dummy(grad_x, h), ws, counter, loss,
        ph, phs0, phs1, praw, prs0, prs1, py, pys, pa_w, pa_b, pa_c, ws[n_layer:],
        batch, in_f, out_f, k, p.num_classes, sg_scale, step, p.step,
        ACT=act, HAS_BIAS=bias is not None, HAS_SG_BIAS=sg_bias is not None,
        CONDITIONED=k > 0, CHAIN=prev is not None, PREV_HAS_BIAS=p.bias is not None,
        PREV_CONDITIONED=p.table is not None, GRAD_X=grad_x is not None, BLOCK_B=SINGLE_ROWS,
        BLOCK_O=pow2(out_f), BLOCK_I=pow2(in_f, hi=SINGLE_CHUNK), DOT_DTYPE=DOT_DTYPES[x.dtype],
        num_warps=SINGLE_WARPS,
    )  # fmt: skip


def _linear_step(x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias, sg_table,
                 labels, activation, sg_scale, lr, prev_h, prev_sg_raw, prev_labels,
                 prev_sg_weight, prev_sg_bias, prev_sg_table, prev_sg_weight_grad,
                 prev_sg_bias_grad, prev_sg_table_grad, prev_lr, compute_grad_x=True,
                 path=None):  # fmt: skip
    """The op's kernel (schema argument order). The launchers take grad_x=None
    without compute_grad_x; the op returns an empty tensor in its place."""
    torch.ops.dni._check_linear_step.default(
        x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias, sg_table, labels,
        activation, float(sg_scale), float(lr), prev_h, prev_sg_raw, prev_labels,
        prev_sg_weight, prev_sg_bias, prev_sg_table, prev_sg_weight_grad,
        prev_sg_bias_grad, prev_sg_table_grad, float(prev_lr), compute_grad_x,
    )  # fmt: skip
    check_device_and_dtype(x)
    batch, in_f = x.shape
    out_f = weight.shape[0]
    prev = None
    if prev_sg_weight is not None:
        prev = SgArgs.build(prev_h, prev_sg_raw, prev_labels, prev_sg_weight, prev_sg_bias,
                            prev_sg_table, prev_sg_weight_grad, prev_sg_bias_grad,
                            prev_sg_table_grad, prev_lr)  # fmt: skip
    grads_mode = weight_grad is not None
    w_dst, b_dst = (weight_grad, bias_grad) if grads_mode else (weight, bias)
    step = -1.0 if grads_mode else float(lr)
    h = torch.empty((batch, out_f), dtype=x.dtype, device=x.device)
    raw = torch.empty_like(h)
    grad_x = x.new_empty((batch, in_f) if compute_grad_x else (0,))
    args = (x, weight, bias, sg_weight, sg_bias, sg_table, labels, ACTIVATION_IDS[activation],
            float(sg_scale), w_dst, b_dst, step, h, raw,
            grad_x if compute_grad_x else None)  # fmt: skip
    programs = max(1, triton.cdiv(batch, SINGLE_ROWS))
    atomics = programs * (out_f * in_f + (in_f * in_f if prev else 0))
    work = largest_product_work(batch, in_f, out_f, chained=prev is not None)
    path = choose_path(path, out_f, atomics, work=work)
    with on_device(x):
        if path == "single":
            loss = torch.empty((), dtype=x.dtype, device=x.device)
            _launch_single(*args, prev, loss)
            return h, raw, grad_x, loss
        _launch_multi(*args, library=path == "cublas")
        if prev is None:
            return h, raw, grad_x, torch.zeros((), dtype=x.dtype, device=x.device)
        sum_sq = launch_regression_gemm(prev, grad_x, library=path == "cublas")
        return h, raw, grad_x, (sum_sq[0] / max(batch, 1)).to(x.dtype)


def linear_step(x, weight, bias, sg_weight, sg_bias=None, sg_table=None, labels=None, *,
                activation="relu", sg_scale=1.0, lr, weight_grad=None, bias_grad=None,
                prev=None, compute_grad_x=True, path: Optional[str] = None):  # fmt: skip
    """The Triton linear_step with the reference's signature (``prev`` a
    reference.PrevSG), plus `path` ("auto" | "single" | "multi" | "cublas"; default
    $DNI_TRITON_PATH or "auto")."""
    p = prev if prev is not None else PrevSG(None, None, None)
    return _linear_step(x, weight, bias, weight_grad, bias_grad, sg_weight, sg_bias,
                        sg_table, labels, activation, sg_scale, lr, p.h, p.sg_raw,
                        p.labels, p.sg_weight, p.sg_bias, p.sg_table, p.sg_weight_grad,
                        p.sg_bias_grad, p.sg_table_grad, p.lr, compute_grad_x, path)  # fmt: skip
