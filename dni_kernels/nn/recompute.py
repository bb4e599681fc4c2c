"""Whether a module's forward is being recomputed by torch.utils.checkpoint."""

from __future__ import annotations

import torch


def recomputing() -> bool:
    """True while a forward runs inside a backward pass, which is where
    torch.utils.checkpoint recomputes it (reentrant or not). A module that updates
    weights or carries state during forward must not do it a second time there.
    Never true while torch.compile traces."""
    return not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1
