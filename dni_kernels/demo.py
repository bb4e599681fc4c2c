"""`python -m dni_kernels demo`: the digits MLP trained with backprop, DNI, cDNI and
the No-Bprop baseline; prints test accuracy and wall time, saves learning curves."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import torch

from .experiments import METHODS, SYNTHESIZERS, Recipe, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = Recipe()
    parser.add_argument("--epochs", type=int, default=default.epochs,
                        help=f"epochs per method (default {default.epochs}; try 100 for longer runs)")  # fmt: skip
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batchnorm", action="store_true",
                        help="BatchNorm after every hidden layer (all methods; reference path)")  # fmt: skip
    parser.add_argument("--synthesizer", choices=sorted(SYNTHESIZERS), default=default.synthesizer,
                        help="SG model of the DNI layers (mlp: reference path)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small batches are fastest on one)")  # fmt: skip
    parser.add_argument("--out", default=os.path.join("out", "dni_digits.png"),
                        help="where to save the learning-curve plot")  # fmt: skip


def run(args: argparse.Namespace) -> None:
    try:
        from tqdm import tqdm
        import matplotlib
    except ImportError as exc:
        raise SystemExit(f"the demo needs the demo extra: pip install 'dni_kernels[demo]' ({exc})")
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    torch.set_num_threads(args.threads)
    recipe = replace(Recipe(), epochs=args.epochs, batchnorm=args.batchnorm,
                     synthesizer=args.synthesizer)
    print(f"digits (sklearn), MLP 64-{'-'.join(map(str, recipe.hidden))}-10, {recipe}, "
          f"seed {args.seed}")  # fmt: skip
    results = []
    with tqdm(total=len(args.methods) * recipe.epochs, unit="epoch") as bar:
        for method in args.methods:
            bar.set_description(method)
            results.append(train(method, recipe, args.seed, on_epoch=lambda: bar.update(1)))
    print(f"{'method':>9} {'test acc':>9} {'wall s':>7}")
    for r in results:
        print(f"{r.method:>9} {100 * r.test_accuracy:>8.1f}% {r.seconds:>7.1f}")

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(range(1, len(r.curve) + 1), [100 * a for a in r.curve], label=r.method)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="DNI on sklearn digits")
    ax.grid(alpha=0.3)
    ax.legend()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"learning curves saved to {os.path.abspath(args.out)}")
