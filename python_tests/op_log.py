"""OpLog: records the dni ops (name and arguments) that run under it."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class OpLog(TorchDispatchMode):
    """`ops` lists the names of the dni ops run under it, `calls` their (name, args,
    kwargs); the dispatcher passes arguments left at their defaults as kwargs, if at all."""

    def __init__(self):
        super().__init__()
        self.calls = []

    @property
    def ops(self):
        return [name for name, _, _ in self.calls]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "dni":
            self.calls.append((func.__name__.split(".")[0], args, kwargs or {}))
        return func(*args, **(kwargs or {}))
