#!/usr/bin/env bash
# Creates .venv (if needed), installs the pinned dependencies and builds dni_kernels
# in place. Idempotent: a second run only rebuilds what changed.
#   DNI_BUILD_CUDA=0 skips the CUDA kernels for a quick CPU-only build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch 2.14.1 is the CUDA 13.0 build (it matches the nvcc 13.0 used to compile the
# CUDA kernels); pip takes it from local disk on the project's machines.
.venv/bin/pip install --quiet -r requirements.txt
# Builds of the shared tree are serialised: concurrent builds would clobber _C.so.
flock /tmp/dni_kernels_build.lock \
  .venv/bin/pip install --quiet --no-build-isolation --no-deps -e .
