#!/usr/bin/env bash
# Issue 7's GPU check (benchmarks/gpu_check.py) on the lent device machine.
#
#   bash benchmarks/gpu_check.sh [gpu_check flags]     # from anywhere in the repo
#
# Writes results.json, summary.md and log.txt to $OUT (the device tool's folder that
# comes back), else /tmp/gpu_check. The run stops starting measurements at ~400 s;
# expect ~7-8 min.
#
# The device machine has no internet, and this repo's .venv is a CPU-only JAX for
# this machine (and far over the tool's 64 MiB), so .venv is not carried. Python:
# $PYTHON if set; else .venv/bin/python if present there and its JAX sees a GPU;
# else python3, the device image's (/opt/torch/.venv: JAX 0.11.2 with the CUDA 13
# plugin, flax, optax, orbax-checkpoint, absl-py, numpy, scipy, PyYAML; no
# ml_collections, per /work/.library/device/KINDS.md). Wheels in .whl/ are installed
# to /tmp/site first. So, once, here in the repo root (.whl/ is git-ignored):
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0
# then the device tool's call (leaves ~5 of the 15 device minutes for the start):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=570)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"

python="${PYTHON:-}"
if [[ -z "$python" && -x .venv/bin/python ]]; then
  if .venv/bin/python -c 'import sys, jax; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null
  then python=.venv/bin/python
  else echo "gpu_check.sh: .venv/bin/python has no GPU JAX; using python3"
  fi
fi
python="${python:-python3}"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || { echo "gpu_check.sh: installing .whl/ failed"; exit 2; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

missing=$("$python" -c '
import importlib.util
def absent(name):
  try:
    return importlib.util.find_spec(name) is None
  except ImportError:  # its parent package is missing
    return True
need = ["jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "absl",
        "numpy", "scipy", "yaml"]
print(" ".join(n for n in need if absent(n)))' 2>&1)
if [[ -n "$missing" ]]; then
  echo "gpu_check.sh: $python ($("$python" --version 2>&1)) lacks: $missing"
  echo "  No internet there: download the wheels here into .whl/ (see this script's"
  echo "  header; pure-Python ones need only --python-version 3.12) and carry .whl."
  exit 2
fi
echo "gpu_check.sh: $python ($("$python" --version 2>&1)); results to $out"
PYTHONUNBUFFERED=1 "$python" -m benchmarks.gpu_check --require_gpu --out="$out" "$@" 2>&1 \
    | tee "$out/log.txt"
