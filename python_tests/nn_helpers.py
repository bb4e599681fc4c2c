"""Small models, batches and training steps shared by the test_nn_* files."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dni_kernels.nn import DNIMLP

IN, HIDDEN, CLASSES, BATCH = 12, (16, 20, 16), 5, 8


def batches(n, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(BATCH, IN, generator=gen, dtype=dtype),
         torch.randint(0, CLASSES, (BATCH,), generator=gen))
        for _ in range(n)
    ]  # fmt: skip


def make_mlp(dtype=torch.float32, seed=0, random_sg=True, **kwargs) -> DNIMLP:
    """A small DNIMLP; `random_sg` gives the zero-initialised synthesizers random
    values so that the very first step already exercises every term."""
    torch.manual_seed(seed)
    model = DNIMLP(IN, HIDDEN, CLASSES, **kwargs).to(dtype)
    if random_sg:
        with torch.no_grad():
            for p in model.synthesizer_parameters():
                p.normal_(0, 0.05)
    return model


def step(model, optimizer, x, y, zero_grad_first=True):
    """One training step, in either of the two usual orders of zero_grad()."""
    if zero_grad_first:
        optimizer.zero_grad()
    loss = F.cross_entropy(model(x, labels=y), y)
    if not zero_grad_first:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def params(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}
