"""Pieces shared by the Triton kernels: per-element math (the twin of
csrc/include/dni/math.h), the strided GEMM loop, the last-program hand-off of the
single-launch kernels, and the host-side launch policy (device, dtype, path, blocks).
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch
import triton
import triton.language as tl

ACTIVATION_IDS = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3}
PATHS = ("auto", "single", "multi", "cublas")
DOT_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}

# The single-launch kernels keep a [rows, out_features] tile of h, ĝ and g (and an
# [O, O] tile of A) in registers, so out_features is bounded. ptxas for sm_90
# (16 rows, 8 warps, float32) reports no spills up to 64 features, which "auto"
# keeps to; an explicit path="single" is allowed up to 128 (it spills there).
SINGLE_AUTO_MAX_FEATURES = 64
SINGLE_MAX_FEATURES = 128
# "auto" takes the single launch while the partial weight gradients that its programs
# add atomically stay small (programs × gradient elements); beyond that the tiled
# GEMMs, which write each gradient element once, win. Heuristic, not GPU-tuned.
SINGLE_MAX_ATOMIC_ELEMENTS = 1 << 20
# "auto" hands the tiled path's products to the library (torch.mm: cuBLAS on a GPU)
# from this many multiply-adds in an op's largest product (counted as the CUDA kernels
# count it, csrc/cuda/params.h::largest_product_work). Measured on an H100
# (`scripts/gpu_check.sh paths`, float32 linear_step, I = O): the library form took
# 0.28–0.89 ms per call, mostly host work (a torch.mm and a launch per product), so up
# to 2^29 it lost to the tiled kernels (B = 512, I = O = 1024: 0.50 against 0.26 ms) or
# came within 7 % of them (but at B = 128, I = O = 64, where auto takes the single
# launch), and from 2^30 it tied or won (B = 1024, I = O = 1024: 0.47 against
# 0.46 ms; B = 4096, I = O = 1024: 0.86 against 1.75 ms). sg_update takes the same
# threshold (B·F²), not measured separately. The CUDA kernels, with less host work per
# call, switch earlier (params.h::prefers_cublas).
LIBRARY_MIN_WORK = 1 << 30


def largest_product_work(batch: int, in_f: int, out_f: int, chained: bool) -> int:
    """linear_step's largest product in multiply-adds: B·I·O (forward, grad_x, update),
    B·O² (the SG) or, chained, B·I² (the lower layer's SG regression)."""
    return batch * max(in_f * out_f, out_f * out_f, in_f * in_f if chained else 0)


@triton.jit
def activation_forward(z, ACT: tl.constexpr):
    """h = φ(z) in float32; ACT indexes ACTIVATION_IDS."""
    if ACT == 1:
        return tl.where(z < 0, 0.0, z)  # NaN stays NaN, as in torch.relu
    elif ACT == 2:
        # tanh z = 1 − 2/(e^{2z} + 1): exact limits ±1 when e^{2z} over/underflows.
        return 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
    elif ACT == 3:
        return 1.0 / (1.0 + tl.exp(-z))
    else:
        return z


@triton.jit
def activation_derivative(h, ACT: tl.constexpr):
    """φ′(z) written through h = φ(z): the kernels keep only h, never z."""
    if ACT == 1:
        return tl.where(h > 0, 1.0, 0.0)
    elif ACT == 2:
        return 1.0 - h * h
    elif ACT == 3:
        return h * (1.0 - h)
    else:
        return tl.full(h.shape, 1.0, tl.float32)


@triton.jit
def update_tile(p_ptr, offs, mask, d, step):
    """p ← p − step·d in float32, stored back in p's dtype. "grads" mode passes the
    .grad buffer as p and step = −1 (p ← p + d), so no kernel branches on the mode. A
    zero step (lr = 0) leaves p untouched, even for a NaN or inf d."""
    if step != 0:
        p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(p_ptr + offs, (p - step * d).to(p_ptr.dtype.element_ty), mask=mask)


@triton.jit
def update_flat(p_ptr, d_ptr, n, step, BLOCK: tl.constexpr):
    """p ← p − step·d over n contiguous elements; d is a float32 workspace filled by
    other programs' atomics, so it is read through L2 (.cg), never a stale L1 line."""
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < n
        d = tl.load(d_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg")
        update_tile(p_ptr, offs, mask, d, step)


@triton.jit
def mma(a_ptr, s_am, s_ak, b_ptr, s_bk, s_bn, offs_m, offs_n, M, N, K,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        DOT_DTYPE: tl.constexpr):  # fmt: skip
    """Σ_k a[m, k]·b[k, n] for the rows offs_m and columns offs_n, float32 accumulator.

    Operands are addressed by strides, so transposes and non-contiguous inputs cost
    nothing. Operands are cast to DOT_DTYPE (the activations' dtype: tensor cores for
    half; IEEE fp32 for float32, matching PyTorch's non-TF32 matmul)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    m_mask = offs_m < M
    n_mask = offs_n < N
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        a = tl.load(a_ptr + offs_m[:, None] * s_am + offs_k[None, :] * s_ak,
                    mask=m_mask[:, None] & k_mask[None, :], other=0.0)  # fmt: skip
        b = tl.load(b_ptr + offs_k[:, None] * s_bk + offs_n[None, :] * s_bn,
                    mask=k_mask[:, None] & n_mask[None, :], other=0.0)  # fmt: skip
        acc = tl.dot(a.to(DOT_DTYPE), b.to(DOT_DTYPE), acc, input_precision="ieee")
    return acc


@triton.jit
def product_tile(p_ptr, a_ptr, s_am, s_ak, b_ptr, s_bk, s_bn, offs_m, offs_n, M, N, K,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 DOT_DTYPE: tl.constexpr, GIVEN: tl.constexpr):  # fmt: skip
    """The tile of a·b that the tiled kernels' epilogues take: `mma`, or with GIVEN
    (the "cublas" path) read from p_ptr, the whole [M, N] product computed by the
    library beforehand (float32, contiguous; see library_product)."""
    if GIVEN:
        mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
        # int64 row offsets: an O×I update product can pass 2^31 elements.
        rows = offs_m.to(tl.int64)[:, None] * N
        acc = tl.load(p_ptr + rows + offs_n[None, :], mask=mask, other=0.0)
    else:
        acc = mma(a_ptr, s_am, s_ak, b_ptr, s_bk, s_bn, offs_m, offs_n, M, N, K,
                  BLOCK_M, BLOCK_N, BLOCK_K, DOT_DTYPE)  # fmt: skip
    return acc


@triton.jit
def gather_labels(y_ptr, s_y, rows, row_mask, K):
    """Labels of `rows` and whether each indexes one of the K table rows. On CUDA the
    range is not checked on the host (that would sync): out-of-range labels fail the
    device assert (enabled with TRITON_DEBUG=1) and are otherwise ignored, never
    read or written out of bounds."""
    y = tl.load(y_ptr + rows * s_y, mask=row_mask, other=0)
    in_range = (y >= 0) & (y < K)
    tl.device_assert(in_range | ~row_mask, "dni: labels out of range of the class table")
    return y, row_mask & in_range


@triton.jit
def is_last_program(counter_ptr):
    """True in exactly one program: the last to arrive, once all others are done.

    The barrier makes every thread of this program finish its workspace atomics and
    its reads of the weights before one thread bumps the counter; the counter atomic
    is acq_rel, so its release publishes this program's writes and, in the last
    program, its acquire makes everyone's writes visible. The second barrier orders
    the other threads of the last program after that acquire."""
    tl.debug_barrier()
    arrived = tl.atomic_add(counter_ptr, 1, sem="acq_rel", scope="gpu")
    tl.debug_barrier()
    return arrived == tl.num_programs(0) - 1


# ---------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------


def pow2(n: int, lo: int = 16, hi: Optional[int] = None) -> int:
    """Block size for a dimension of n: a power of two ≥ 16 (tl.dot's minimum)."""
    b = max(lo, triton.next_power_of_2(max(n, 1)))
    return min(b, hi) if hi is not None else b


def check_device_and_dtype(x: torch.Tensor) -> None:
    """After the shared checks: Triton runs CUDA tensors, and CPU tensors only in its
    interpreter; activations float32/float16/bfloat16 (float64 has no fast path)."""
    if x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "dni: the Triton kernels run on CUDA tensors; CPU tensors only under "
            "TRITON_INTERPRET=1 (set before importing dni_kernels.triton). Use "
            "backend='auto' for the C++ CPU kernels."
        )
    if x.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"dni: the Triton kernels run on CUDA tensors, got {x.device}")
    if x.dtype not in DOT_DTYPES:
        raise TypeError(
            f"dni: the Triton kernels take float32, float16 or bfloat16 activations, got "
            f"{x.dtype}; use backend='auto' (C++) for float64"
        )


def choose_path(path: Optional[str], features: int, atomic_elements: int, work: int = 0) -> str:
    """'single', 'multi' or 'cublas' from the `path` argument, else $DNI_TRITON_PATH,
    else auto: the library's products from LIBRARY_MIN_WORK multiply-adds in the op's
    largest product (`work`), else the single launch while `features` (its widest row
    tile) fits in registers and the atomically reduced partial gradients stay under
    SINGLE_MAX_ATOMIC_ELEMENTS, else the tiled kernels."""
    path = path or os.environ.get("DNI_TRITON_PATH") or "auto"
    if path not in PATHS:
        raise ValueError(f"dni: path must be one of {PATHS}, got {path!r}")
    if path == "single" and features > SINGLE_MAX_FEATURES:
        raise ValueError(
            f"dni: path='single' holds {features} features per row in registers; it "
            f"supports at most {SINGLE_MAX_FEATURES}, use path='multi'"
        )
    if path == "auto":
        if work >= LIBRARY_MIN_WORK:
            return "cublas"
        small = features <= SINGLE_AUTO_MAX_FEATURES
        return "single" if small and atomic_elements <= SINGLE_MAX_ATOMIC_ELEMENTS else "multi"
    return path


# Single-launch block table: 16 batch rows per program and 32-wide feature chunks
# with 8 warps keep the row tiles in registers (see SINGLE_AUTO_MAX_FEATURES).
SINGLE_ROWS = 16
SINGLE_CHUNK = 32
SINGLE_WARPS = 8


def library_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a·b as a float32 [M, N] contiguous tensor, for product_tile's GIVEN form: cuBLAS's
    float32-output form for half operands on a GPU, float32 copies of mixed or CPU half
    operands (rounding a half product before the epilogue would cost precision that the
    in-kernel tl.dot, accumulating in float32, does not lose)."""
    if a.dtype == b.dtype == torch.float32:
        return torch.mm(a, b)
    if a.is_cuda and a.dtype == b.dtype:
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a.float(), b.float())


def single_workspace(n_float: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """One zero-filled allocation: an int32 arrival counter and n_float float32 slots
    (16-byte aligned) for the atomically reduced partial gradients."""
    buf = torch.zeros(4 + n_float, dtype=torch.int32, device=device)
    return buf[:1], buf[4:].view(torch.float32)


def on_device(t: torch.Tensor):
    """Triton launches on the current CUDA device: make it t's."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def or_dummy(t: Optional[torch.Tensor], dummy: torch.Tensor) -> torch.Tensor:
    """Absent optional tensors are passed as a dummy pointer that a constexpr flag
    keeps the kernel from touching."""
    return t if t is not None else dummy
