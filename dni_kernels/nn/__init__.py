"""Drop-in DNI modules (Jaderberg et al. 2016) on top of dni_kernels.ops.

Fused: DNILinear with a LinearSynthesizer, and DNISequential / DNIMLP stacks of them
(one fused launch per layer per step). Reference path (plain PyTorch): MLP and conv
synthesizers, DNIConv2d, and BackwardInterface after any module.
"""

from .dni_lstm import DNILSTM
from .interface import BackwardInterface
from .layers import DNIConv2d, DNILinear, DNIModule
from .sequential import DNIMLP, DNISequential
from .synthesizers import ConvSynthesizer, LinearSynthesizer, MLPSynthesizer

__all__ = [
    "BackwardInterface",
    "ConvSynthesizer",
    "DNIConv2d",
    "DNILSTM",
    "DNILinear",
    "DNIMLP",
    "DNIModule",
    "DNISequential",
    "LinearSynthesizer",
    "MLPSynthesizer",
]
