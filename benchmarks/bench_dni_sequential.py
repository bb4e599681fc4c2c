"""DNISequential fused-SGD training step vs the backprop step of the same MLP.

Both steps run in this process with the same threads: forward, cross-entropy,
backward, optimizer step (the DNI step's backward only reaches the head and the top
SG regression; its layers are updated inside the fused forward). A DNI step does 5
GEMMs per layer to backprop's 3, but neither computes the first layer's grad_x (the
input needs no gradient): 14 GEMMs to 8 at depth 3, the floor; the target is ≤ 1.75×.

    python benchmarks/bench_dni_sequential.py [--quick] [--depth 3]

Prints a table and writes JSON rows to benchmarks/results/dni_sequential.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import time_columns  # noqa: E402

from dni_kernels.nn import DNIMLP  # noqa: E402

CLASSES = 10
LR = 1e-3  # small, so thousands of timed steps keep the values finite and normal


def backprop_mlp(width: int, depth: int) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, CLASSES))


def make_step(model, optimizer, x, y, labels):
    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(x, labels=labels) if labels is not None else model(x)
        F.cross_entropy(logits, y).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings (smoke run)")
    parser.add_argument("--depth", type=int, default=3, help="hidden layers")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/dni_sequential.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    min_run_time = 0.1 if args.quick else 0.5
    rows = []
    print(f"threads={torch.get_num_threads()} depth={args.depth}")
    print(f"{'B':>5} {'width':>6} {'backprop ms':>12} {'DNI ms':>8} {'cDNI ms':>8} "
          f"{'DNI/bp':>7} {'cDNI/bp':>8}")  # fmt: skip
    for batch in (32, 256):
        for width in (256, 1024):
            torch.manual_seed(0)
            x = torch.randn(batch, width)
            y = torch.randint(0, CLASSES, (batch,))
            bp = backprop_mlp(width, args.depth)
            steps = {"backprop": make_step(bp, torch.optim.SGD(bp.parameters(), lr=LR), x, y, None)}
            for name, classes in (("dni", None), ("cdni", CLASSES)):
                dni = DNIMLP(width, [width] * args.depth, CLASSES, conditioned_on=classes,
                             update="sgd", lr=LR, lr_sg=LR)  # fmt: skip
                steps[name] = make_step(dni, torch.optim.SGD(dni.head.parameters(), lr=LR), x, y, y)
            times = time_columns(steps, device=torch.device("cpu"), min_run_time=3 * min_run_time)
            ratio = {k: times[k] / times["backprop"] for k in ("dni", "cdni")}
            print(f"{batch:>5} {width:>6} {times['backprop'] * 1e3:>12.3f} "
                  f"{times['dni'] * 1e3:>8.3f} {times['cdni'] * 1e3:>8.3f} "
                  f"{ratio['dni']:>7.2f} {ratio['cdni']:>8.2f}")  # fmt: skip
            rows.append({"bench": "dni_sequential_sgd_step", "batch": batch, "width": width,
                         "depth": args.depth, "threads": torch.get_num_threads(),
                         "seconds": times, "ratio_vs_backprop": ratio,
                         "torch": torch.__version__, "machine": platform.processor()})  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
