#!/usr/bin/env bash
# Runs the CPU LSTM tests on the AVX-512 steps (csrc/cpu/lstm_window_step_avx512.cpp) on a
# CPU without AVX-512: a copy of this tree is built with DNI_EMULATE_AVX512=1, which
# compiles those steps with SIMDe's portable AVX-512 intrinsics
# (csrc/cpu/avx512_emulation.h) and lets them run on any CPU, and the tests then take
# them (DNI_CPU_LSTM_STEP=avx512, and `auto` for float32 with H a multiple of 64). It
# checks what the steps compute against the reference, not their speed.
#
# Needs .venv (scripts/setup_env.sh) and SIMDe's headers (Debian/Ubuntu: apt install
# libsimde-dev; elsewhere put them on CPATH). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! echo '#include <simde/x86/avx512.h>' | g++ -x c++ -fsyntax-only - 2>/dev/null; then
  echo "SIMDe's headers are missing (apt install libsimde-dev, or set CPATH)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The working tree as it is (tracked and new files), built apart from ./dni_kernels/_C*.so.
git ls-files -co --exclude-standard | tar -T - -cf - | tar -xf - -C "$work"
ln -s "$PWD/.venv" "$work/.venv"
cd "$work"
export DNI_EMULATE_AVX512=1 DNI_BUILD_CUDA=0
.venv/bin/python setup.py -q build_ext --inplace > build.log 2>&1 || { tail -50 build.log; exit 1; }
# python -m puts this copy first on sys.path, before the checkout the venv points at.
.venv/bin/python -m pytest -q -p no:cacheprovider python_tests/test_lstm.py \
  python_tests/test_lstm_module.py python_tests/test_autocast.py python_tests/test_nn_api.py "$@"
