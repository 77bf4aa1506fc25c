#!/usr/bin/env bash
# One accelerator's numbers in one go, within 8 minutes: ViT-S/16 and ViT-B/16
# bf16 training img/s with XLA's and cuDNN's attention, MFU, ResNet-50 img/s,
# compile times, and the ImageNet input pipeline's img/s (bench/device.py).
#
#   bench/device.sh [--wheels DIR] [--dry-run] [device.py options]
#
# --wheels DIR: first install, from DIR alone (no index), what a bare CUDA JAX
#   image lacks: jaxclf's dependencies except TensorFlow and TFDS, which the
#   script never imports (wheels for the machine's Python and platform, e.g.
#   pip download --no-deps --only-binary=:all: --python-version 3.12 ...).
# --dry-run: the same programs on this machine's CPU at tiny sizes.
# PYTHON: the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ "${1:-}" == "--wheels" ]]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/jaxclf-site "$2"/*.whl
  export PYTHONPATH="/tmp/jaxclf-site${PYTHONPATH:+:$PYTHONPATH}"
  shift 2
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 480 "$PYTHON" bench/device.py "$@"
