#!/usr/bin/env bash
# Runs the CPU LSTM tests on the AVX-512 steps (csrc/cpu/lstm_window_step_avx512.cpp) on an
# x86-64 CPU without AVX-512 (GCC builds): a copy of this tree is built with
# DNI_EMULATE_AVX512=1, which compiles those steps with SIMDe's portable AVX-512
# intrinsics (csrc/cpu/avx512_emulation.h) and lets them run on any such CPU, and the
# tests then take them (DNI_CPU_LSTM_STEP=avx512, and `auto` for float32 with H a
# multiple of 64). It checks what the steps compute against the reference, within the
# tests' tolerances, not their speed.
#
# Needs .venv (scripts/setup_env.sh) and SIMDe's headers (Debian/Ubuntu: apt install
# libsimde-dev; elsewhere put them on CPATH). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "no .venv: run scripts/setup_env.sh first" >&2; exit 2; }
if ! echo '#include <simde/x86/avx512.h>' | "${CXX:-c++}" -x c++ -fsyntax-only - 2>/dev/null; then
  echo "SIMDe's headers are missing (apt install libsimde-dev, or set CPATH)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The working tree as it is (tracked files still present, and new ones), built apart
# from ./dni_kernels/_C*.so.
git ls-files -z -co --exclude-standard |
  while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
  tar --null -T - -cf - | tar -xf - -C "$work"
ln -s "$PWD/.venv" "$work/.venv"
cd "$work"
export DNI_EMULATE_AVX512=1 DNI_BUILD_CUDA=0 PYTHONPATH="$work"
.venv/bin/python setup.py -q build_ext --inplace > build.log 2>&1 || { tail -50 build.log; exit 1; }
# The copy's build must be the one imported (the venv's own path points at the checkout),
# and it must take the AVX-512 steps here.
.venv/bin/python - "$work" <<'PY'
import os, sys
import torch
import dni_kernels
from dni_kernels import ops

assert dni_kernels.__file__.startswith(sys.argv[1]), dni_kernels.__file__
os.environ["DNI_CPU_LSTM_STEP"] = "avx512"
ops.lstm_window_forward(torch.randn(2, 3, 4), torch.zeros(3, 64), torch.zeros(3, 64),
                        torch.randn(256, 4), torch.randn(256, 64), None)
PY
.venv/bin/python -m pytest -q -p no:cacheprovider python_tests/test_lstm.py \
  python_tests/test_lstm_module.py python_tests/test_autocast.py python_tests/test_nn_api.py "$@"
