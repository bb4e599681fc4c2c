"""pytest-benchmark view of bench_linear_step.py (same inputs, same columns):

    .venv/bin/python -m pytest benchmarks/test_bench_linear_step.py --benchmark-group-by=param:size

Groups by size, so pytest-benchmark's table shows fused / eager / compile side by side.
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_linear_step import CPU_SIZES, columns, make_inputs  # noqa: E402

COLUMNS = columns(torch.device("cpu"))


@pytest.mark.parametrize("size", CPU_SIZES, ids=lambda s: f"B{s[0]}-W{s[1]}")
@pytest.mark.parametrize("variant", list(COLUMNS))
def test_linear_step(benchmark, size, variant):
    batch, width = size
    inputs = list(make_inputs(batch, width, torch.device("cpu")).values())
    step = COLUMNS[variant]
    step(*inputs)  # warm-up (and torch.compile's compilation)
    benchmark(step, *inputs)
