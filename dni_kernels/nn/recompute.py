"""Whether a module's forward is being recomputed by torch.utils.checkpoint."""

from __future__ import annotations

import torch


def recomputing() -> bool:
    """True while a forward runs with grad enabled inside a backward pass, which is
    where torch.utils.checkpoint recomputes it (reentrant or not). A module that
    updates weights or carries state during forward must not do it a second time
    there. A forward in a hook of an ordinary backward runs with grad disabled (as an
    ordinary layer); never true while torch.compile traces."""
    return (not torch.compiler.is_compiling() and torch.is_grad_enabled()
            and torch._C._current_graph_task_id() != -1)  # fmt: skip
