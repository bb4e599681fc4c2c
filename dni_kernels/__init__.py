"""dni_kernels: fused kernels and drop-in modules for Decoupled Neural Interfaces.

    import dni_kernels
    dni_kernels.ops.linear_step(...)      # one fused layer step (see reference.py)
    dni_kernels.reference.linear_step(...)  # the same, in plain PyTorch
"""

from . import reference
from ._extension import LOAD_ERROR, built_with_cuda, has_kernel
from . import ops

__all__ = ["ops", "reference", "built_with_cuda", "has_kernel", "LOAD_ERROR"]
__version__ = "0.1.0"
