"""Test configuration shared by every test file.

TRITON_INTERPRET must be set before Triton decorates any kernel, i.e. before any
test module imports dni_kernels.triton; conftest.py is imported first, so it is set
here. On a machine with a GPU the Triton kernels run compiled instead.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
