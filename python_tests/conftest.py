"""Test configuration shared by every test file.

TRITON_INTERPRET must be set before Triton decorates any kernel, i.e. before any
test module imports dni_kernels.triton; conftest.py is imported first, so it is set
here. On a machine with a GPU the Triton kernels run compiled instead.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored afterwards: the small batches of the
    training tests are fastest on one, and a second thread only contends on a shared
    machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
