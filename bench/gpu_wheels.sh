#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has torch 2.11, transformers, accelerate, peft; no
# trl, datasets, bitsandbytes, liger-kernel; no registry), for Python 3.12 manylinux x86_64.
# Run here (pip reaches the registry), then carry the folder with the run (64 MiB at most):
#   bash bench/gpu_wheels.sh            -> bench/wheels (62.1 MiB measured 2026-12-03; gitignored)
#   BNB=1 bash bench/gpu_wheels.sh      -> also bitsandbytes 0.50 (41 MiB more: over the
#                                          64 MiB carry limit: QLoRA cases are skipped without it)
# bench/gpu_check.py --wheels bench/wheels installs them offline before the phases.
set -euo pipefail
DEST="${1:-bench/wheels}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$DEST"
get() {  # no dependencies: torch, transformers and triton are on the GPU machine already
  "$PY" -m pip download --quiet --dest "$DEST" --python-version 3.12 --only-binary=:all: --no-deps \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_28_x86_64 "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
get "trl==1.16.0" "datasets==5.2.0" "liger-kernel==0.8.5"
# datasets' own dependencies that a torch + transformers machine does not bring
get "pyarrow==24.0.0" dill multiprocess xxhash pandas python-dateutil pytz tzdata six
if [ "${BNB:-0}" = "1" ]; then get "bitsandbytes==0.50.2"; fi
du -sh "$DEST"
