"""Shared benchmark helpers: timing, the sgemm roofline, tables and JSON rows.

Every benchmark measures all its columns in one process with the same thread count,
and reports ratios (which hold on shared machines) next to absolute medians (which
drift). The roofline fraction of an op is its GEMM FLOPs ÷ the rate of a large
square sgemm measured in the same run ÷ the op's time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from torch.utils import benchmark as tbench

# torch.compile's default pool of compile-worker processes stays alive after the
# compile columns and competed for this 2-core CPU with the columns timed after
# them (the fused op measured 12.8 ms alone and 15.9 ms after a compile column).
# Compiling in-process keeps every column's timing on a quiet machine.
inductor_config.compile_threads = 1

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def env_var(name: str, value: str):
    """$name = value inside the block (the ops' path switches are read on every call)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def under_env(name: str, value: str, fn):
    """fn with $name = value while it runs: a benchmark column that forces one of an
    op's paths (the ops read their path switches on every call)."""

    def run(*args):
        with env_var(name, value):
            return fn(*args)

    return run


def median_seconds(fn, *, device: torch.device, min_run_time: float = 1.0) -> float:
    """Median time of `fn()` after warm-up: torch.utils.benchmark on CPU, CUDA-event
    timing via triton.testing.do_bench on a GPU (never wall-clock around async work)."""
    for _ in range(2):
        fn()
    if device.type == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def time_columns(fns: dict, *, device: torch.device, min_run_time: float = 1.0,
                 rounds: int = 3) -> dict:
    """Seconds per call of each column. Rounds alternate between the columns and each
    keeps its best round's median, so drift or a burst of load from other tenants of a
    shared machine lands on every column alike instead of on one."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            seconds = median_seconds(fn, device=device, min_run_time=min_run_time / rounds)
            best[name] = min(best[name], seconds)
    return best


def sgemm_column(device: torch.device, n: int = 2048):
    """The roofline column: an n×n×n float32 matmul, as (fn, FLOPs). Timed among an
    op's columns, it gives the sgemm rate of the same moment."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    return (lambda: torch.mm(a, b, out=out)), 2 * n**3


def environment(device: torch.device) -> dict:
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or min(os.cpu_count() or 1, torch.get_num_threads()))


def _parse_size(parser: argparse.ArgumentParser, text: str, arity: int) -> tuple:
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) != arity or min(size) < 1:
        parser.error(f"--size takes {arity} positive integers separated by commas, got {text!r}")
    return size


def bench_main(name: str, doc: str, run, cpu_sizes, cuda_sizes=None,
               quick_help: str = "smallest size only, short runs") -> None:
    """The command line every benchmark shares: --quick, --size, --threads,
    --min-run-time and --device; runs `run(device, sizes, min_run_time)` on each
    selected device (the GPU only when present) and writes the results to
    benchmarks/results/<name>[_device].json (a run on one device never overwrites
    another device's results)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="benchmark the CPU, the GPU, or both (the GPU only when present)")
    arity = len(cpu_sizes[0])
    parser.add_argument("--size", action="append", default=None, metavar=",".join(["N"] * arity),
                        help=f"a size to run instead of the default list or --quick's ({arity} integers, in the "
                             "tables' column order); repeatable")  # fmt: skip
    args = parser.parse_args()
    chosen = [_parse_size(parser, text, arity) for text in args.size] if args.size else None
    set_threads(args.threads)
    min_run_time = 0.2 if args.quick else args.min_run_time
    results = {}
    for kind, sizes in (("cpu", cpu_sizes), ("cuda", cuda_sizes or cpu_sizes)):
        if args.device not in (kind, "all") or (kind == "cuda" and not torch.cuda.is_available()):
            continue
        sizes = chosen or (sizes[:1] if args.quick else sizes)
        results[kind] = run(torch.device(kind), sizes, min_run_time)
    suffix = "" if args.device == "all" else f"_{args.device}"
    print("wrote", write_json(name + suffix, results))
