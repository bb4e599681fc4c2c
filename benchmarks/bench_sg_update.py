"""Benchmark dni::sg_update (the SG regression): the fused op vs the eager reference vs
torch.compile of the reference, in one run, plus a 2048² sgemm for the roofline.

    python benchmarks/bench_sg_update.py [--quick]

Its one GEMM is the update eᵀh (2·B·F² FLOPs); the rest is the residual, the loss and
the bias/class-table reductions.

On a GPU, `fused` takes the CUDA op's own choice of product (DNI_CUDA_PATH=auto), and
`fused_tiled` / `fused_cublas` force its tiled GEMM / cuBLAS.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bench_main, environment, print_table, sgemm_column, time_columns, under_env  # noqa: E402

from dni_kernels import ops, reference  # noqa: E402

SIZES = [(32, 256), (256, 1024), (1024, 2048)]
CLASSES = 10


def make_inputs(batch, feat, device):
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    labels = torch.randint(0, CLASSES, (batch,), generator=g).to(device)
    return (r(batch, feat), r(batch, feat), r(batch, feat), r(feat, feat, scale=feat**-0.5),
            r(feat, scale=0.1), r(CLASSES, feat, scale=0.1), labels)  # fmt: skip


def columns(device):
    # A tiny lr keeps the repeatedly updated SG finite; the work is the same for any lr.
    compiled_ref = torch.compile(reference.sg_update)

    def fused(*t):
        return ops.sg_update(*t, lr=1e-6)

    cols = {
        "fused": fused,
        "eager": lambda *t: reference.sg_update(*t, lr=1e-6),
        "compile": lambda *t: compiled_ref(*t, lr=1e-6),
    }
    if device.type == "cuda":
        cols.update(fused_tiled=under_env("DNI_CUDA_PATH", "multi", fused),
                    fused_cublas=under_env("DNI_CUDA_PATH", "cublas", fused))
    return cols


def run(device, sizes, min_run_time):
    print(f"{device}, {torch.get_num_threads()} threads")
    cols = columns(device)
    sgemm, sgemm_flops = sgemm_column(device)
    rows = []
    for batch, feat in sizes:
        fns = {name: (lambda step, t: lambda: step(*t))(step, make_inputs(batch, feat, device))
               for name, step in cols.items()}  # fmt: skip
        times = time_columns({"sgemm": sgemm, **fns}, device=device, min_run_time=min_run_time)
        peak = sgemm_flops / times.pop("sgemm")
        row = {"B": batch, "F": feat, "sgemm_GFLOPs": peak / 1e9}
        for name, seconds in times.items():
            row[f"{name}_ms"] = seconds * 1e3
            row[f"{name}_roofline"] = 2 * batch * feat * feat / peak / seconds
        row["eager/fused"] = row["eager_ms"] / row["fused_ms"]
        row["compile/fused"] = row["compile_ms"] / row["fused_ms"]
        rows.append(row)
    print_table(rows, list(rows[0]))
    return {"env": environment(device), "rows": rows}


def main():
    bench_main("bench_sg_update", __doc__, run, SIZES)


if __name__ == "__main__":
    main()
