"""Benchmark dni::linear_step: the fused op vs the eager reference vs torch.compile of
the reference, in one run, plus a 2048² sgemm for the roofline.

    python benchmarks/bench_linear_step.py            # CPU columns (GPU columns too on a GPU)
    python benchmarks/bench_linear_step.py --quick    # smallest size only

On a GPU the fused op has several columns: CUDA C++ (the op's own path choice, and
the single-launch, multi-launch (tiled GEMM) and cuBLAS paths forced) and Triton (its
own choice, and the tiled and cuBLAS paths forced).
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_main, environment, print_table, sgemm_column, time_columns, under_env  # noqa: E402

from dni_kernels import ops, reference  # noqa: E402

CPU_SIZES = [(32, 256), (256, 1024), (1024, 2048)]
GPU_BATCHES = [32, 256, 4096]
GPU_WIDTHS = [256, 1024, 4096]


def gemm_flops(batch: int, in_f: int, out_f: int) -> int:
    """forward + SG + grad_x + weight update."""
    return 2 * batch * in_f * out_f + 2 * batch * out_f * out_f + 2 * batch * out_f * in_f + 2 * out_f * batch * in_f


def make_inputs(batch, width, device, dtype=torch.float32):
    g = torch.Generator(device="cpu").manual_seed(0)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    return dict(
        x=r(batch, width),
        weight=r(width, width, scale=width**-0.5),
        bias=r(width, scale=0.1),
        sg_weight=r(width, width, scale=width**-0.5),
        sg_bias=r(width, scale=0.1),
    )


def columns(device: torch.device) -> dict:
    """name -> step function(x, weight, bias, sg_weight, sg_bias). A tiny lr keeps the
    repeatedly updated weights finite; the work per call is the same for any lr."""
    kw = dict(activation="relu", lr=1e-6)

    def fused(backend=None, path_env=None, path=None):
        def step(x, w, b, a, ab):
            return ops.linear_step(x, w, b, a, ab, backend=backend, **kw)

        return step if path_env is None else under_env(path_env, path, step)

    def eager(x, w, b, a, ab):
        return reference.linear_step(x, w, b, a, ab, **kw)

    compiled_ref = torch.compile(reference.linear_step)

    def compiled(x, w, b, a, ab):
        return compiled_ref(x, w, b, a, ab, **kw)

    if device.type == "cpu":
        return {"fused": fused(), "eager": eager, "compile": compiled}
    # "cuda" and "triton" use each backend's own path choice (what a user gets); the
    # forced paths show what that choice is worth. A path that cannot take a size
    # (the single launch holds a row of features in registers) is left blank.
    return {
        "cuda": fused("cuda"),
        "cuda_single": fused("cuda", "DNI_CUDA_PATH", "single"),
        "cuda_multi": fused("cuda", "DNI_CUDA_PATH", "multi"),
        "cuda_cublas": fused("cuda", "DNI_CUDA_PATH", "cublas"),
        "triton": fused("triton"),
        "triton_multi": fused("triton", "DNI_TRITON_PATH", "multi"),
        "triton_cublas": fused("triton", "DNI_TRITON_PATH", "cublas"),
        "eager": eager,
        "compile": compiled,
    }


def runnable(cols: dict, device: torch.device, batch: int, width: int) -> dict:
    """name -> fn() on its own inputs, for the columns that can take this size. On a GPU
    a forced path may refuse a size (or a backend may be missing): say so, go on."""
    fns = {}
    for name, step in cols.items():
        t = list(make_inputs(batch, width, device).values())
        fn = (lambda step, t: lambda: step(*t))(step, t)
        try:
            fn()
        except (RuntimeError, ValueError) as exc:
            if device.type == "cpu":
                raise
            print(f"  {name} at B={batch}, width={width}: skipped ({exc})")
            continue
        fns[name] = fn
    return fns


def run(device: torch.device, sizes, min_run_time: float) -> dict:
    print(f"{device}, {torch.get_num_threads()} threads")
    cols = columns(device)
    sgemm, sgemm_flops = sgemm_column(device)
    rows = []
    for batch, width in sizes:
        flops = gemm_flops(batch, width, width)
        fns = runnable(cols, device, batch, width)
        times = time_columns({"sgemm": sgemm, **fns}, device=device, min_run_time=min_run_time)
        peak = sgemm_flops / times.pop("sgemm")
        row = {"B": batch, "I=O": width, "sgemm_GFLOPs": peak / 1e9}
        for name, seconds in times.items():
            row[f"{name}_ms"] = seconds * 1e3
            row[f"{name}_roofline"] = flops / peak / seconds
        base = "fused" if device.type == "cpu" else "cuda"
        for other in ("eager", "compile"):
            if f"{base}_ms" in row and f"{other}_ms" in row:
                row[f"{other}/{base}"] = row[f"{other}_ms"] / row[f"{base}_ms"]
        rows.append(row)
    shown = (["B", "I=O", "sgemm_GFLOPs"] + [f"{n}_ms" for n in cols]
             + [k for k in rows[0] if "/" in k] + [f"{n}_roofline" for n in cols])
    print_table(rows, shown)
    return {"env": environment(device), "rows": rows}


def main():
    bench_main("bench_linear_step", __doc__, run, CPU_SIZES, [(b, w) for b in GPU_BATCHES for w in GPU_WIDTHS])


if __name__ == "__main__":
    main()
