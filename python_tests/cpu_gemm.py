"""$DNI_CPU_GEMM (csrc/dense_linear.cpp): which library runs a large float32 product on
the CPU, oneDNN or BLAS (at::mm), for the tests that check each choice."""

from __future__ import annotations

import platform
import sys

import torch

# auto's choice for a product that is not one of many on a packed weight: oneDNN,
# except on an x86 CPU without AVX-512 when torch has MKL. (torch's capability stands in
# for the kernels' own check of the same AVX-512 subsets: leave $ATEN_CPU_CAPABILITY
# unset. The kernels check the CPU with GCC's builtins, which an MSVC build lacks.)
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686") and sys.platform != "win32"
ONEDNN_BY_DEFAULT = (not X86 or torch.backends.cpu.get_cpu_capability() == "AVX512"
                     or not torch.backends.mkl.is_available())  # fmt: skip

# ($DNI_CPU_GEMM, torch.backends.mkldnn enabled): each choice, and oneDNN switched off by
# the user, which wins over the choice.
CHOICES = [("onednn", True), ("blas", True), ("auto", True), ("onednn", False)]
CHOICE_IDS = ["onednn", "blas", "auto", "mkldnn_off"]


def runs_onednn(gemm: str, mkldnn: bool, *, repeated: bool = False) -> bool:
    """Whether a large float32 product goes to oneDNN under this choice; `repeated`: one
    of the products on a packed weight (an LSTM window's per-step ones)."""
    chosen = gemm == "onednn" or (gemm == "auto" and (repeated or ONEDNN_BY_DEFAULT))
    return chosen and mkldnn and torch.backends.mkldnn.is_available()
