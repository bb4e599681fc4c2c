"""Benchmark one bootstrapped LSTM window, forward + backward, in one run:

    fused     dni::lstm_dni_window fwd + bwd: the window, the SG prediction at both
              boundaries, the bootstrap ĝ_end and the SG regression (what DNILSTM runs),
              x requiring grad
    fused_no_grad_x   the same with x needing no gradient: the op then skips grad_x
    window    dni::lstm_window_forward fwd + bwd, x requiring grad: the window alone, no
              SG work (fused − window is the SG work's cost, within the run's noise)
    fused_loop_steps  (CPU) `fused` with each step a library product and a gate loop
              (DNI_CPU_LSTM_STEP=loop) instead of the one-pass AVX-512 or AVX2 steps that
              `fused` takes where the CPU has them
    eager     the same as `fused` in plain PyTorch (reference.lstm_dni_window)
    compile   torch.compile of that reference (the T steps unrolled; compiling takes
              25–115 s per window length and shape class on 2 CPU cores, before timing)
    nn_lstm   torch.nn.LSTM fwd + bwd alone (oneDNN on CPU, cuDNN on a GPU), no SG; it
              computes grad_x whether x requires grad or not

On a GPU also:
    window_fused_steps / window_cublas_steps   `window` with each step's recurrent GEMM
              forced inside the step kernel / to cuBLAS (DNI_CUDA_LSTM_STEP); `window`
              and `fused` take the op's own choice
    triton    `fused` on the Triton kernels (their own step form choice)
    triton_fused_steps / triton_cublas_steps   `triton` with each step's recurrent
              product forced inside the step kernel / to torch.mm (DNI_TRITON_LSTM_STEP)
    nn_lstm_fp32   nn_lstm with cuDNN's TF32 off. PyTorch lets cuDNN use TF32 tensor
              cores by default (torch.backends.cudnn.allow_tf32), so `nn_lstm` computes
              its float32 products with 10-bit mantissas; our kernels do not.

plus a 2048² sgemm for the roofline: the window's LSTM GEMM FLOPs (six products; five
for fused_no_grad_x; the SG's extra work not counted) ÷ sgemm rate ÷ time.

    python benchmarks/bench_lstm.py            # T ∈ {8, 40}, B ∈ {32, 256}, H ∈ {256, 1024}
    python benchmarks/bench_lstm.py --quick    # T=8, B=32, H=256 only
"""

from __future__ import annotations

import itertools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_main, environment, print_table, sgemm_column, time_columns, under_env  # noqa: E402

from dni_kernels import ops, reference  # noqa: E402

SIZES = list(itertools.product([8, 40], [32, 256], [256, 1024]))  # (T, B, H), input size = H
# One compiled function for all sizes, so that dynamo's automatic dynamic shapes reuse
# graphs across batch and hidden sizes instead of compiling each size from scratch.
compiled_reference = torch.compile(reference.lstm_dni_window)


def gemm_flops(steps: int, batch: int, inp: int, hidden: int, grad_x: bool = True) -> int:
    """Forward (x W_ihᵀ, h W_hhᵀ) and backward (dh, grad_x, grad_W_ih, grad_W_hh): six
    GEMMs of 2·T·B·4H·(I or H) FLOPs, five without grad_x."""
    return 2 * steps * batch * 4 * hidden * (3 * (inp + hidden) - (0 if grad_x else inp))


def make_inputs(steps, batch, hidden, device):
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    k = hidden**-0.5
    return dict(x=r(steps, batch, hidden), h0=r(batch, hidden, scale=0.5), c0=r(batch, hidden, scale=0.5),
                w_ih=r(4 * hidden, hidden, scale=k), w_hh=r(4 * hidden, hidden, scale=k),
                bias=r(4 * hidden, scale=0.1), sg_weight=r(hidden, hidden, scale=0.1 * k),
                sg_bias=r(hidden, scale=0.01), grad_hs=r(steps, batch, hidden))  # fmt: skip


def columns(t: dict) -> dict:
    """name -> fn() running one window fwd + bwd on the inputs `t`."""
    params = {n: t[n].clone().requires_grad_() for n in ("w_ih", "w_hh", "bias", "sg_weight", "sg_bias")}
    lstm = torch.nn.LSTM(t["x"].shape[2], t["h0"].shape[1], device=t["x"].device)
    state = (t["h0"][None], t["c0"][None])

    x_leaf = t["x"].clone().requires_grad_()

    def fused_with(x, backend=None):
        def fused():
            for p in (*params.values(), x):
                p.grad = None
            p = params
            hs, _, _ = ops.lstm_dni_window(x, t["h0"], t["c0"], p["w_ih"], p["w_hh"], p["bias"],
                                           p["sg_weight"], p["sg_bias"], sg_scale=0.1,
                                           backend=backend)  # fmt: skip
            hs.backward(t["grad_hs"])

        return fused

    def window():
        for p in (params["w_ih"], params["w_hh"], params["bias"], x_leaf):
            p.grad = None
        hs, _, _ = ops.lstm_window_forward(x_leaf, t["h0"], t["c0"], params["w_ih"],
                                           params["w_hh"], params["bias"])  # fmt: skip
        hs.backward(t["grad_hs"])

    def reference_with(fn):
        def run():
            fn(t["x"], t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["bias"], t["sg_weight"],
               t["sg_bias"], grad_hs=t["grad_hs"], sg_scale=0.1)  # fmt: skip

        return run

    def nn_lstm():
        lstm.zero_grad(set_to_none=True)
        out, _ = lstm(t["x"], state)
        out.backward(t["grad_hs"])

    cols = {"fused": fused_with(x_leaf), "fused_no_grad_x": fused_with(t["x"]), "window": window,
            "eager": reference_with(reference.lstm_dni_window),
            "compile": reference_with(compiled_reference), "nn_lstm": nn_lstm}  # fmt: skip
    if not t["x"].is_cuda:
        return {**cols, "fused_loop_steps": under_env("DNI_CPU_LSTM_STEP", "loop", cols["fused"])}

    triton = fused_with(x_leaf, "triton")

    def nn_lstm_fp32():
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            nn_lstm()

    return {**cols, "window_fused_steps": under_env("DNI_CUDA_LSTM_STEP", "fused", window),
            "window_cublas_steps": under_env("DNI_CUDA_LSTM_STEP", "cublas", window), "triton": triton,
            "triton_fused_steps": under_env("DNI_TRITON_LSTM_STEP", "fused", triton),
            "triton_cublas_steps": under_env("DNI_TRITON_LSTM_STEP", "cublas", triton),
            "nn_lstm_fp32": nn_lstm_fp32}  # fmt: skip


def run(device: torch.device, sizes, min_run_time: float) -> dict:
    print(f"{device}, {torch.get_num_threads()} threads")
    sgemm, sgemm_flops = sgemm_column(device)
    rows = []
    for steps, batch, hidden in sizes:
        flops = gemm_flops(steps, batch, hidden, hidden)
        flops_no_grad_x = gemm_flops(steps, batch, hidden, hidden, grad_x=False)
        cols = columns(make_inputs(steps, batch, hidden, device))
        times = time_columns({"sgemm": sgemm, **cols}, device=device, min_run_time=min_run_time)
        peak = sgemm_flops / times.pop("sgemm")
        row = {"T": steps, "B": batch, "H": hidden, "sgemm_GFLOPs": peak / 1e9}
        for name, seconds in times.items():
            row[f"{name}_ms"] = seconds * 1e3
            work = flops_no_grad_x if name == "fused_no_grad_x" else flops
            row[f"{name}_roofline"] = work / peak / seconds
        row["fused/nn_lstm"] = row["fused_ms"] / row["nn_lstm_ms"]
        row["fused_no_grad_x/nn_lstm"] = row["fused_no_grad_x_ms"] / row["nn_lstm_ms"]
        row["window/nn_lstm"] = row["window_ms"] / row["nn_lstm_ms"]
        row["fused/eager"] = row["fused_ms"] / row["eager_ms"]
        row["fused/compile"] = row["fused_ms"] / row["compile_ms"]
        if device.type == "cpu":
            row["fused/fused_loop_steps"] = row["fused_ms"] / row["fused_loop_steps_ms"]
        if device.type == "cuda":
            row["fused/nn_lstm_fp32"] = row["fused_ms"] / row["nn_lstm_fp32_ms"]
            row["triton/nn_lstm"] = row["triton_ms"] / row["nn_lstm_ms"]
        rows.append(row)
        print_table(rows[-1:], list(row))
    print()
    print_table(rows, list(rows[0]))
    return {"env": environment(device), "rows": rows}


def main():
    bench_main("bench_lstm", __doc__, run, SIZES, quick_help="T=8, B=32, H=256 only, short runs")


if __name__ == "__main__":
    main()
