#!/usr/bin/env bash
# Creates .venv (if needed), installs the pinned dependencies and builds dni_kernels
# in place, incrementally (ninja keeps ./build), with the source tree on the venv's
# path — a development install. Idempotent. For a regular install into any
# environment: pip install --no-build-isolation .
#   DNI_BUILD_CUDA=0 skips the CUDA kernels, =1 requires them (default: built when
#   a CUDA toolkit and a CUDA build of torch are present; see setup.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch 2.14.1 is the CUDA 13.0 build (it matches the nvcc 13.0 used to compile the
# CUDA kernels); pip takes it from local disk on the project's machines.
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
export MAX_JOBS=${MAX_JOBS:-2}
# Builds of one tree are serialised: concurrent builds would clobber _C.so.
echo "building dni_kernels (DNI_BUILD_CUDA=${DNI_BUILD_CUDA:-auto}); log: build.log"
flock .build.lock .venv/bin/python setup.py build_ext --inplace > build.log 2>&1 \
  || { tail -80 build.log; echo "build failed: see build.log"; exit 1; }
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD" > "$site/dni_kernels_dev.pth"
