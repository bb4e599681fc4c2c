#!/usr/bin/env bash
# Sets up (scripts/setup_env.sh) and runs the demo: a small MLP trained on
# scikit-learn's handwritten digits with backprop, DNI and cDNI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m dni_kernels demo "$@"
