"""Triton kernels of dni_kernels: the implementations of torch.ops.dni.*_triton.

Importing this package registers them for CUDA tensors and for CPU tensors; on CPU
they run only in Triton's interpreter (TRITON_INTERPRET=1, set before this import)
and raise a clear error otherwise. `linear_step` and `sg_update` are the launchers
with the reference's signatures plus `path` ("auto" | "single" | "multi" | "cublas",
see linear_step.py for the dispatch rule), for tests and benchmarks:
dni_kernels.triton.linear_step.linear_step(..., path="single"). They call the
kernels directly, bypassing the op's autocast kernel (csrc/ops.cpp): run them outside
torch.autocast, or call the ops.
"""

import torch

from .._extension import require_kernels
from . import linear_step, lstm_window, sg_update

__all__ = ["linear_step", "lstm_window", "sg_update"]

require_kernels(torch.device("cpu"))  # the schemas and the shared checks are compiled
torch.library.register_kernel("dni::linear_step_triton", ("cpu", "cuda"))(linear_step._linear_step)
torch.library.register_kernel("dni::sg_update_triton", ("cpu", "cuda"))(sg_update._sg_update)
for _op in ("lstm_window_forward", "lstm_window_backward"):
    torch.library.register_kernel(f"dni::{_op}_triton", ("cpu", "cuda"))(getattr(lstm_window, _op))
