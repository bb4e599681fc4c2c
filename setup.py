"""Build dni_kernels._C with torch.utils.cpp_extension.

CPU kernels are always built (OpenMP on). CUDA kernels are built when a CUDA toolkit
is found (CUDA_HOME, or the conventional /usr/local/cuda) and torch is a CUDA build;
never decided by torch.cuda.is_available(), so a GPU-less build machine still
compiles them. Environment knobs:

    DNI_BUILD_CUDA=0|1      force the CUDA kernels off, or require them
    TORCH_CUDA_ARCH_LIST    architectures (default "8.0;9.0": A100, H100)
    MAX_JOBS                parallel compile jobs (default 2)
    DNI_EMULATE_AVX512=1    a test build whose AVX-512 LSTM steps run emulated on any
                            x86-64 CPU (scripts/check_avx512_emulated.sh), never for use

Install with `pip install --no-build-isolation .` so the build uses the torch you
already have instead of downloading a second one.
"""

import glob
import os
import shutil

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def find_cuda_home():
    """The toolkit root. The first nvcc on PATH may be a wrapper script outside the
    toolkit (it is here), which misleads torch's own guess, so look explicitly."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return home
    for candidate in ("/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)):
        if os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        home = os.path.dirname(os.path.dirname(real))
        if os.path.exists(os.path.join(home, "include", "cuda.h")):
            return home
    return None


def want_cuda():
    import torch

    flag = os.environ.get("DNI_BUILD_CUDA")
    cuda_home = find_cuda_home()
    available = cuda_home is not None and torch.version.cuda is not None
    if flag == "0":
        return False
    if flag == "1" and not available:
        raise RuntimeError(
            "DNI_BUILD_CUDA=1 but no CUDA build is possible: "
            f"CUDA toolkit {'at ' + cuda_home if cuda_home else 'not found'} (set CUDA_HOME), "
            f"torch.version.cuda={torch.version.cuda} (install a CUDA build of torch)"
        )
    if available:
        os.environ["CUDA_HOME"] = cuda_home  # before cpp_extension reads it
    return available


def extensions():
    build_cuda = want_cuda()
    os.environ.setdefault("MAX_JOBS", "2")
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -fno-trapping-math / -fno-math-errno change no results (we use no FP traps and
    # never read errno); they let GCC vectorise selects such as relu's φ′ instead of
    # leaving a scalar loop with a mispredicting branch.
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-DNDEBUG", "-fno-trapping-math", "-fno-math-errno"]
    if os.environ.get("DNI_EMULATE_AVX512") == "1":  # scripts/check_avx512_emulated.sh
        cxx.append("-DDNI_EMULATE_AVX512")
    kwargs = dict(
        include_dirs=[os.path.join(ROOT, "csrc", "include")],
        extra_link_args=["-fopenmp"],
    )
    if not build_cuda:
        return [CppExtension("dni_kernels._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)]
    sources += sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    # No --use_fast_math: its approximate tanh/exp put float32 results ~1e-3 off
    # (seen on an H100 against the float64 reference); these kernels are GEMM-bound.
    nvcc = ["-O3", "-std=c++20", "-lineinfo", "--expt-relaxed-constexpr"]
    return [
        CUDAExtension(
            "dni_kernels._C",
            sources,
            define_macros=[("DNI_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            **kwargs,
        )
    ]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=True)


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext_class()},
)
