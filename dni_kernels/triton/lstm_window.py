"""Triton kernels for dni::lstm_window_forward_triton / lstm_window_backward_triton
(dni_kernels/reference.py, LSTM section).

Forward: the input projection x W_ihᵀ + b of the whole window is ONE GEMM up front
(torch.addmm, i.e. cuBLAS on a GPU), written into the gates buffer. Then one launch
per step (`_forward_step_kernel`): each program owns a [BLOCK_B rows × BLOCK_H units]
tile, computes h_{t−1} W_hhᵀ for the four gate blocks of those units (four
accumulators sharing each loaded h tile, tiled tl.dot, float32), and in the epilogue
adds the projection, activates the gates and updates c and h: the pre-activations
never go back to memory. Gate order (i, f, g, o); per-unit math is `lstm_unit_*`
below, the twin of csrc/include/dni/lstm_math.h.

Backward: one launch per step, t = T−1 … 0 (`_backward_step_kernel`): the program's
tile of dh_t = dz_{t+1} W_hh (K = 4H, tiled tl.dot) plus the in-window gradient, then
the gate backward, which writes dz_t and carries ∂L/∂c in a float32 buffer. The
window-wide GEMMs (grad_x, grad_W_ih, grad_W_hh, δ_start's h part) and the bias sum
are torch.mm / sum over all T·B rows at once (cuBLAS on a GPU): large, regular GEMMs
that a library does best; only the sequential part is a custom kernel.

Each step's recurrent product runs in one of two places ($DNI_TRITON_LSTM_STEP, read
on every call, the same vocabulary as the CUDA kernels' DNI_CUDA_LSTM_STEP):
"fused", inside the step kernel (tl.dot tiles, one launch per step), or "cublas", as a
library product (torch.mm: cuBLAS on a GPU) into a float32 buffer that the same step
kernel reads in place of its dot loop (two launches per step, the product at the
library's rate). "auto" (the default) takes the library from 2^28 multiply-adds per
step (B·4H·H), measured on an H100 (see LIBRARY_STEP_MIN_WORK). There, at T = 8,
B = 256, H = 1024, the library form took the window from 4.63 to 3.52 ms.

Per-step launches rather than one persistent kernel: a persistent kernel would need
a grid-wide barrier between steps (h_t is read by every program of step t+1), which
Triton has no portable way to express; the launch cost is small against the GEMM at
the sizes this targets (B·H ≥ 32·256).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import (DOT_DTYPES, activation_derivative, activation_forward, check_device_and_dtype,
                      library_product, on_device, pow2)

@triton.jit
def lstm_unit_forward(zi, zf, zg, zo, c_prev):
    """Activated gates, c_t and h_t from the pre-activations (lstm_math.h twin).
    Activation ids as in _common.ACTIVATION_IDS: 2 = tanh, 3 = sigmoid."""
    i = activation_forward(zi, 3)
    f = activation_forward(zf, 3)
    g = activation_forward(zg, 2)
    o = activation_forward(zo, 3)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * activation_forward(c, 2)


@triton.jit
def lstm_unit_backward(i, f, g, o, c, c_prev, dh, dc):
    """dz of the four gates and ∂L/∂c_{t−1} from dh = ∂L/∂h_t, dc = ∂L/∂c_t from
    above (lstm_math.h twin); tanh(c_t) is recomputed, not stored."""
    tanh_c = activation_forward(c, 2)
    dc = dc + dh * o * activation_derivative(tanh_c, 2)
    dzi = dc * g * activation_derivative(i, 3)
    dzf = dc * c_prev * activation_derivative(f, 3)
    dzg = dc * i * activation_derivative(g, 2)
    dzo = dh * tanh_c * activation_derivative(o, 3)
    return dzi, dzf, dzg, dzo, dc * f


@triton.jit
def _forward_step_kernel(hp_ptr, s_hpb, s_hpk, cp_ptr, s_cpb, s_cpj, w_ptr, s_wr, s_wk,
                         rec_ptr, z_ptr, c_ptr, h_ptr, B, H, RECURRENT: tl.constexpr,
                         BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                         DOT_DTYPE: tl.constexpr):  # fmt: skip
    """One step. z_ptr [B, 4H] holds x_t W_ihᵀ + b on entry and the activated gates on
    exit; h_{t−1} (hp) and c_{t−1} (cp) are strided (h0, c0 may be views). RECURRENT:
    the kernel computes h_{t−1} W_hhᵀ itself; otherwise it reads that product from
    rec_ptr ([B, 4H], float32, contiguous)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    units = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    r_mask = rows < B
    u_mask = units < H
    mask = r_mask[:, None] & u_mask[None, :]
    gate_cols = rows[:, None] * 4 * H + units[None, :]  # gate i's columns of a [B, 4H] row
    if RECURRENT:
        acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
        gate = H * s_wr  # distance between the gate blocks of W_hh's rows
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_mask = ks < H
            hp = tl.load(hp_ptr + rows[:, None] * s_hpb + ks[None, :] * s_hpk,
                         mask=r_mask[:, None] & k_mask[None, :], other=0.0).to(DOT_DTYPE)  # fmt: skip
            # W_hhᵀ tile of gate q: element (k, j) = W_hh[q·H + j, k].
            w = w_ptr + units[None, :] * s_wr + ks[:, None] * s_wk
            w_mask = k_mask[:, None] & u_mask[None, :]
            acc_i = tl.dot(hp, tl.load(w, mask=w_mask, other=0.0).to(DOT_DTYPE), acc_i, input_precision="ieee")
            acc_f = tl.dot(hp, tl.load(w + gate, mask=w_mask, other=0.0).to(DOT_DTYPE), acc_f, input_precision="ieee")
            acc_g = tl.dot(hp, tl.load(w + 2 * gate, mask=w_mask, other=0.0).to(DOT_DTYPE), acc_g, input_precision="ieee")
            acc_o = tl.dot(hp, tl.load(w + 3 * gate, mask=w_mask, other=0.0).to(DOT_DTYPE), acc_o, input_precision="ieee")
    else:
        acc_i = tl.load(rec_ptr + gate_cols, mask=mask, other=0.0)
        acc_f = tl.load(rec_ptr + gate_cols + H, mask=mask, other=0.0)
        acc_g = tl.load(rec_ptr + gate_cols + 2 * H, mask=mask, other=0.0)
        acc_o = tl.load(rec_ptr + gate_cols + 3 * H, mask=mask, other=0.0)
    z = z_ptr + gate_cols
    zi = acc_i + tl.load(z, mask=mask, other=0.0).to(tl.float32)
    zf = acc_f + tl.load(z + H, mask=mask, other=0.0).to(tl.float32)
    zg = acc_g + tl.load(z + 2 * H, mask=mask, other=0.0).to(tl.float32)
    zo = acc_o + tl.load(z + 3 * H, mask=mask, other=0.0).to(tl.float32)
    c_prev = tl.load(cp_ptr + rows[:, None] * s_cpb + units[None, :] * s_cpj, mask=mask, other=0.0)
    i, f, g, o, c, h = lstm_unit_forward(zi, zf, zg, zo, c_prev.to(tl.float32))
    out_ty = z_ptr.dtype.element_ty
    tl.store(z, i.to(out_ty), mask=mask)
    tl.store(z + H, f.to(out_ty), mask=mask)
    tl.store(z + 2 * H, g.to(out_ty), mask=mask)
    tl.store(z + 3 * H, o.to(out_ty), mask=mask)
    state = rows[:, None] * H + units[None, :]
    tl.store(c_ptr + state, c.to(out_ty), mask=mask)
    tl.store(h_ptr + state, h.to(out_ty), mask=mask)


@triton.jit
def _backward_step_kernel(dzn_ptr, w_ptr, s_wr, s_wk, a_ptr, c_ptr, cp_ptr, s_cpb, s_cpj,
                          dhg_ptr, s_dhgb, s_dhgj, gh_ptr, s_ghb, s_ghj, gc_ptr, s_gcb, s_gcj,
                          dc_ptr, dz_ptr, B, H,
                          RECURRENT: tl.constexpr, HAS_DH_GIVEN: tl.constexpr,
                          HAS_GRAD_H: tl.constexpr, HAS_GRAD_C: tl.constexpr,
                          BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                          DOT_DTYPE: tl.constexpr):  # fmt: skip
    """One BPTT step. dh_t = dz_{t+1} W_hh (RECURRENT; else read from dhg_ptr when
    HAS_DH_GIVEN: grad_h_end at the last step, or the product computed by the library)
    + grad_hs[t]; dc_ptr [B, H] float32 holds the carry
    ∂L/∂c_t on entry (before grad_cs[t]) and ∂L/∂c_{t−1} on exit. Writes dz_t."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    units = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    r_mask = rows < B
    u_mask = units < H
    mask = r_mask[:, None] & u_mask[None, :]
    dh = tl.zeros((BLOCK_B, BLOCK_H), dtype=tl.float32)
    if RECURRENT:
        # K = 4H, walked gate block by gate block: dz_{t+1}[:, q·H + k] · W_hh[q·H + k, j].
        for q in tl.static_range(4):
            for k0 in range(0, H, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                k_mask = ks < H
                a = tl.load(dzn_ptr + rows[:, None] * 4 * H + q * H + ks[None, :],
                            mask=r_mask[:, None] & k_mask[None, :], other=0.0)  # fmt: skip
                w = tl.load(w_ptr + (q * H + ks)[:, None] * s_wr + units[None, :] * s_wk,
                            mask=k_mask[:, None] & u_mask[None, :], other=0.0)  # fmt: skip
                dh = tl.dot(a.to(DOT_DTYPE), w.to(DOT_DTYPE), dh, input_precision="ieee")
    elif HAS_DH_GIVEN:
        dh = tl.load(dhg_ptr + rows[:, None] * s_dhgb + units[None, :] * s_dhgj, mask=mask, other=0.0).to(tl.float32)
    if HAS_GRAD_H:
        dh += tl.load(gh_ptr + rows[:, None] * s_ghb + units[None, :] * s_ghj, mask=mask, other=0.0).to(tl.float32)
    state = rows[:, None] * H + units[None, :]
    dc = tl.load(dc_ptr + state, mask=mask, other=0.0)
    if HAS_GRAD_C:
        dc += tl.load(gc_ptr + rows[:, None] * s_gcb + units[None, :] * s_gcj, mask=mask, other=0.0).to(tl.float32)
    gates = rows[:, None] * 4 * H + units[None, :]
    i = tl.load(a_ptr + gates, mask=mask, other=0.0).to(tl.float32)
    f = tl.load(a_ptr + gates + H, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(a_ptr + gates + 2 * H, mask=mask, other=0.0).to(tl.float32)
    o = tl.load(a_ptr + gates + 3 * H, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(c_ptr + state, mask=mask, other=0.0).to(tl.float32)
    c_prev = tl.load(cp_ptr + rows[:, None] * s_cpb + units[None, :] * s_cpj, mask=mask, other=0.0).to(tl.float32)
    dzi, dzf, dzg, dzo, dc_prev = lstm_unit_backward(i, f, g, o, c, c_prev, dh, dc)
    out_ty = dz_ptr.dtype.element_ty
    tl.store(dz_ptr + gates, dzi.to(out_ty), mask=mask)
    tl.store(dz_ptr + gates + H, dzf.to(out_ty), mask=mask)
    tl.store(dz_ptr + gates + 2 * H, dzg.to(out_ty), mask=mask)
    tl.store(dz_ptr + gates + 3 * H, dzo.to(out_ty), mask=mask)
    tl.store(dc_ptr + state, dc_prev, mask=mask)


# ---------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------

# Not autotuned (a step kernel overwrites its inputs' buffers). 4 accumulators of
# [64, 32] float32 fit the registers of 4 warps; small batches use a 16-row tile.
MAX_BLOCK_B, BLOCK_H, BLOCK_K = 64, 32, 32


# DNI_TRITON_LSTM_STEP=auto puts the recurrent product on the library from this many
# multiply-adds per step (B·4H·H). Measured on an H100 (bench_lstm.py, T = 8, fused
# window ms, tl.dot steps against library steps): B = 32, H = 1024 (2^27) 2.56 against
# 3.51; B = 256, H = 256 (2^26) 3.13 against 3.12; B = 256, H = 1024 (2^30) 4.63
# against 3.52; 2^28 lies between the measured loss and win, untimed. The CUDA steps,
# with less host work per launch, switch at 2^27.
LIBRARY_STEP_MIN_WORK = 2**28


def _library_steps(batch: int, hidden: int) -> bool:
    """True when each step's recurrent product goes to torch.mm ($DNI_TRITON_LSTM_STEP)."""
    mode = os.environ.get("DNI_TRITON_LSTM_STEP", "auto")
    if mode not in ("auto", "fused", "cublas"):
        raise ValueError(f"dni: DNI_TRITON_LSTM_STEP must be auto, fused or cublas, got {mode!r}")
    return mode == "cublas" or (mode == "auto" and batch * 4 * hidden * hidden >= LIBRARY_STEP_MIN_WORK)


def _blocks(batch: int, hidden: int):
    bb, bh, bk = pow2(batch, hi=MAX_BLOCK_B), pow2(hidden, hi=BLOCK_H), pow2(hidden, hi=BLOCK_K)
    return bb, bh, bk, (triton.cdiv(batch, bb), triton.cdiv(hidden, bh))


def lstm_window_forward(x, h0, c0, w_ih, w_hh, bias=None):
    """The op's kernel; schema argument order = the reference's."""
    torch.ops.dni._check_lstm_window_forward.default(x, h0, c0, w_ih, w_hh, bias)
    check_device_and_dtype(x)
    steps, batch, inp = x.shape
    hidden = h0.shape[1]
    gates = x.new_empty((steps, batch, 4 * hidden))
    hs, cs = x.new_empty((steps, batch, hidden)), x.new_empty((steps, batch, hidden))
    bb, bh, bk, grid = _blocks(batch, hidden)
    library = _library_steps(batch, hidden)
    with on_device(x):
        # The input projection of all T steps: one library GEMM, straight into gates.
        x_flat, z_flat = x.reshape(steps * batch, inp), gates.view(steps * batch, 4 * hidden)
        if bias is not None:
            torch.addmm(bias, x_flat, w_ih.t(), out=z_flat)
        else:
            torch.mm(x_flat, w_ih.t(), out=z_flat)
        for t in range(steps if batch * hidden else 0):  # no empty grids
            hp, cp = (h0, c0) if t == 0 else (hs[t - 1], cs[t - 1])
            rec = library_product(hp, w_hh.t()) if library else gates[t]  # unread if fused
            _forward_step_kernel[grid](hp, *hp.stride(), cp, *cp.stride(), w_hh, *w_hh.stride(),
                                       rec, gates[t], cs[t], hs[t], batch, hidden,
                                       RECURRENT=not library, BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk,
                                       DOT_DTYPE=DOT_DTYPES[x.dtype])  # fmt: skip
    return hs, cs, gates


def _strided(t, dummy):
    """(tensor, stride0, stride1) of an optional [B, H] operand; a dummy when absent
    (its constexpr flag keeps the kernel from reading it)."""
    return (t, *t.stride()) if t is not None else (dummy, 0, 0)


def lstm_window_backward(grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih, w_hh,
                         hs, cs, gates, compute_grad_x=True):  # fmt: skip
    """The op's kernel; schema argument order = the reference's."""
    torch.ops.dni._check_lstm_window_backward.default(
        grad_hs, grad_cs, grad_h_end, grad_c_end, x, h0, c0, w_ih, w_hh, hs, cs, gates,
        compute_grad_x)  # fmt: skip
    check_device_and_dtype(x)
    steps, batch, inp = x.shape
    hidden = h0.shape[1]
    dz = torch.empty_like(gates)
    # The ∂L/∂c carry, float32 across all steps (rounded once, into grad_c0).
    dc = (grad_c_end.float().clone(memory_format=torch.contiguous_format) if grad_c_end is not None
          else torch.zeros((batch, hidden), dtype=torch.float32, device=x.device))  # fmt: skip
    bb, bh, bk, grid = _blocks(batch, hidden)
    library = _library_steps(batch, hidden)
    with on_device(x):
        for t in reversed(range(steps if batch * hidden else 0)):
            last = t == steps - 1
            cp = c0 if t == 0 else cs[t - 1]
            # dh_t from the later steps: the boundary gradient at the last step; otherwise
            # dz_{t+1} W_hh, in the kernel or (library steps) handed to it like grad_h_end.
            dh_given = grad_h_end if last else (library_product(dz[t + 1], w_hh) if library else None)
            _backward_step_kernel[grid](
                dz[t + 1] if not last else dz[t], w_hh, *w_hh.stride(), gates[t], cs[t],
                cp, *cp.stride(), *_strided(dh_given, dc),
                *_strided(grad_hs[t] if grad_hs is not None else None, dc),
                *_strided(grad_cs[t] if grad_cs is not None else None, dc),
                dc, dz[t], batch, hidden,
                RECURRENT=not last and not library, HAS_DH_GIVEN=dh_given is not None,
                HAS_GRAD_H=grad_hs is not None, HAS_GRAD_C=grad_cs is not None,
                BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, DOT_DTYPE=DOT_DTYPES[x.dtype],
            )  # fmt: skip
        # Whole-window library GEMMs over all T·B rows; δ_start's h part dz_0 W_hh.
        dz_flat = dz.view(steps * batch, 4 * hidden)
        grad_h0 = torch.mm(dz[0], w_hh)
        grad_x = (torch.mm(dz_flat, w_ih).view(steps, batch, inp) if compute_grad_x
                  else x.new_empty(0))  # fmt: skip
        grad_w_ih = torch.mm(dz_flat.t(), x.reshape(steps * batch, inp))
        grad_w_hh = torch.mm(dz[0].t(), h0)
        if steps > 1:  # h_{t−1} = hs[t−1] for t ≥ 1: no concatenation with h0
            rows = (steps - 1) * batch
            grad_w_hh.addmm_(dz[1:].reshape(rows, 4 * hidden).t(), hs[:-1].reshape(rows, hidden))
        grad_bias = dz_flat.sum(0, dtype=torch.float32).to(x.dtype)
    return grad_x, grad_h0, dc.to(x.dtype), grad_w_ih, grad_w_hh, grad_bias

