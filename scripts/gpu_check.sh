#!/usr/bin/env bash
# Build, test and benchmark the GPU kernels on a machine with a GPU, in one go.
#   scripts/gpu_check.sh [build] [test] [sanitize] [paths] [bench] [bench_lstm]   (default: build test)
# Uses the python3 on PATH and its torch (no venv: the GPU machine brings its own
# CUDA torch). Logs go to $OUT (or ./gpu_out), so a run cut short still leaves them.
#   build     CUDA + CPU kernels in place, for TORCH_CUDA_ARCH_LIST (default: this GPU)
#   test      every GPU test file (CUDA C++ and compiled Triton) under pytest-xdist
#   sanitize  compute-sanitizer memcheck + racecheck over a few small CUDA cases
#   bench     the GPU columns of the linear_step and sg_update benchmarks
#   bench_lstm   the GPU columns of the LSTM benchmark ($DNI_LSTM_SIZES: "T,B,H ...")
#   paths     linear_step's three CUDA and three Triton paths (single launch, multi
#             launch, cuBLAS) over layer sizes around their crossovers (the data
#             behind DNI_CUDA_PATH=auto and DNI_TRITON_PATH=auto)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Build with the system compiler: an image's own gcc (CC/CXX=/opt/gcc/... on the
# lent GPU machine) linked parts of libstdc++ into _C, and C++ exceptions thrown
# from the kernels (argument checks) then crashed the process.
echo "compilers in the environment: CC=${CC:-unset} CXX=${CXX:-unset}"
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++; fi
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(build test)
status=0
# Small float32 cases of each CUDA kernel family, for compute-sanitizer (slow).
SANITIZE_CASES="(linear_step_matches_reference and float32 and relu and sgd and 33) or \
(sg_update_matches_reference and float32) or (window_matches_reference and shape1 and dtype0)"

run_phase() {
    case "$1" in
    build)
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
        nvcc --version | tail -2
        echo "building with CC=$CC CXX=$CXX"
        local arch
        arch=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
        time DNI_BUILD_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch} MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            python3 setup.py -q build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; return 1; }
        python3 -c "import dni_kernels; assert dni_kernels.built_with_cuda(); print('built with CUDA')"
        echo "libstdc++ locale code linked into _C (0 expected): $(nm -C dni_kernels/_C*.so | grep -c ' T std::codecvt')"
        ;;
    test)
        time timeout "${DNI_TEST_TIMEOUT:-400}" python3 -m pytest -q -rfE --tb=short -p no:cacheprovider \
            -n "${DNI_TEST_WORKERS:-8}" --timeout 120 \
            --junitxml="$OUT/junit.xml" \
            python_tests/test_cuda_kernels.py python_tests/test_lstm_cuda.py \
            python_tests/test_linear_step_triton.py python_tests/test_sg_update_triton.py \
            python_tests/test_lstm_triton.py python_tests/test_nn_cuda.py \
            python_tests/test_autocast.py python_tests/test_extension.py 2>&1 | tee "$OUT/test.log" | tail -60
        ;;
    sanitize)
        for tool in memcheck racecheck; do
            timeout "${DNI_SANITIZE_TIMEOUT:-150}" compute-sanitizer --tool "$tool" --error-exitcode 9 \
                python3 -m pytest -q -x -p no:cacheprovider python_tests/test_cuda_kernels.py \
                python_tests/test_lstm_cuda.py -k "$SANITIZE_CASES" >"$OUT/sanitize_$tool.log" 2>&1
            echo "compute-sanitizer $tool: exit $?"; tail -15 "$OUT/sanitize_$tool.log"
        done
        ;;
    bench)
        for b in bench_linear_step bench_sg_update; do
            python3 "benchmarks/$b.py" --device cuda 2>&1 | tee "$OUT/$b.log" | grep -v "^W" || return 1
            cp "benchmarks/results/${b}_cuda.json" "$OUT/"
        done
        ;;
    bench_lstm)
        # All eight sizes ran past a 10-minute call (the compile column compiles T = 40
        # unrolled steps); DNI_LSTM_SIZES="8,32,256 40,256,1024" runs a few per call.
        local sizes=()
        for size in ${DNI_LSTM_SIZES:-}; do sizes+=(--size "$size"); done
        python3 benchmarks/bench_lstm.py --device cuda --min-run-time 0.5 ${sizes[@]+"${sizes[@]}"} 2>&1 |
            tee "$OUT/bench_lstm.log" | grep -v "^W" || return 1
        cp benchmarks/results/bench_lstm_cuda.json "$OUT/"
        ;;
    paths)
        python3 - <<'EOF' 2>&1 | tee "$OUT/paths.log"
import os

import torch
from triton.testing import do_bench

from dni_kernels import ops

for backend, setting in (("auto", "DNI_CUDA_PATH"), ("triton", "DNI_TRITON_PATH")):
    print(f"{backend}: {setting}; microseconds per linear_step, relu; last: auto, the op's own choice")
    print("   B   I=O  single_us  multi_us  cublas_us")
    for width in (64, 128, 256, 512, 1024):
        for batch in (32, 128, 512, 1024, 2048, 4096):
            x = torch.randn(batch, width, device="cuda")
            w, a = torch.randn(width, width, device="cuda") * 0.05, torch.randn(width, width, device="cuda") * 0.01
            b, ab = torch.zeros(width, device="cuda"), torch.zeros(width, device="cuda")
            us = {}
            for path in ("single", "multi", "cublas", "auto"):
                os.environ[setting] = path
                fn = lambda: ops.linear_step(x, w, b, a, ab, activation="relu", lr=1e-6, backend=backend)  # noqa: E731
                try:
                    us[path] = do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3
                except (RuntimeError, ValueError):  # the single launch's feature limit
                    pass
            cells = [f"{us[p]:9.1f}" if p in us else f"{'-':>9}" for p in ("single", "multi", "cublas")]
            print(f"{batch:4d} {width:5d}  " + "  ".join(cells) + f"  auto {us['auto']:.1f}")
EOF
        ;;
    *) echo "unknown phase $1"; return 2 ;;
    esac
}

for phase in "${phases[@]}"; do
    echo "=== $phase"
    run_phase "$phase" || status=1
done
exit $status
