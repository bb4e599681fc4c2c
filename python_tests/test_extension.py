"""Loading the compiled library: clear, actionable errors when it is missing."""

import subprocess
import sys

import pytest
import torch

import dni_kernels
from dni_kernels import _extension


def test_library_loaded_and_ops_registered_for_cpu():
    assert dni_kernels.LOAD_ERROR is None
    for op in ("linear_step", "sg_update"):
        assert dni_kernels.has_kernel(op, "CPU"), op


def test_cuda_request_on_cpu_only_build_says_how_to_build(monkeypatch):
    monkeypatch.setattr(_extension, "built_with_cuda", lambda: False)
    with pytest.raises(RuntimeError, match="built without its CUDA kernels.*DNI_BUILD_CUDA=1"):
        _extension.require_kernels(torch.device("cuda"))


def test_missing_library_says_how_to_build(monkeypatch):
    monkeypatch.setattr(_extension, "LOAD_ERROR", ImportError("no _C"))
    with pytest.raises(RuntimeError, match="could not be loaded.*pip install --no-build-isolation"):
        _extension.require_kernels(torch.device("cpu"))


def test_import_without_library_still_gives_the_reference(tmp_path):
    """A tree without the compiled _C: import works, the reference runs, an op
    explains how to build."""
    code = """
import importlib.abc, sys
class HideC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "dni_kernels._C":
            raise ImportError("hidden for the test")
sys.meta_path.insert(0, HideC())
import torch, dni_kernels
from dni_kernels import reference, ops
x = torch.randn(2, 3); w = torch.randn(4, 3); a = torch.zeros(4, 4)
reference.linear_step(x, w, None, a, lr=0.1)
try:
    ops.linear_step(x, w, None, a, lr=0.1)
except RuntimeError as e:
    print("ERR", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERR dni_kernels: the compiled extension" in out.stdout and "pip install" in out.stdout


CMAKE_LIB_ENV = "DNI_CMAKE_LIB"


@pytest.mark.skipif(CMAKE_LIB_ENV not in __import__("os").environ,
                    reason=f"set {CMAKE_LIB_ENV} to the CMake-built libdni_kernels.so (scripts/test.sh does)")  # fmt: skip
def test_cmake_library_runs_an_op():
    """The CMake build is a working library: loaded on its own (without the Python
    package's _C), its sg_update matches the formula."""
    import os

    code = f"""
import torch
torch.ops.load_library({os.environ[CMAKE_LIB_ENV]!r})
h = torch.randn(5, 4, dtype=torch.float64); raw = torch.randn(5, 4, dtype=torch.float64)
t = torch.randn(5, 4, dtype=torch.float64); A = torch.randn(4, 4, dtype=torch.float64)
expected = A - 0.1 * (2 / 5) * (raw - t).t() @ h
loss = torch.ops.dni.sg_update(h, raw, t, None, A, None, None, None, None, None, 0.1)
torch.testing.assert_close(A, expected)
torch.testing.assert_close(loss, ((raw - t) ** 2).sum() / 5)
print("OK")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr
