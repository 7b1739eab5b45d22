#!/usr/bin/env bash
# Make .venv with everything the studio needs; `--dev` adds the test tools and Chromium;
# `--gguf` (and --dev) the GGUF export's parts (scripts/setup_gguf.sh: builds llama.cpp once).
# Idempotent and quick when nothing changed (a stamp holds the requirements' hash).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; GGUF=0
for arg in "$@"; do
  case "$arg" in --dev) DEV=1; GGUF=1 ;; --gguf) GGUF=1 ;; esac
done
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
want=$(cat requirements.txt $( [ $DEV = 1 ] && echo requirements-dev.txt ) | sha256sum | cut -c1-16)
stamp=.venv/.studio-installed-$want
if [ ! -f "$stamp" ]; then
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      $PIP install -q torch
    else
      # CPU wheel: from the local wheel cache where there is one, else PyTorch's CPU index
      $PIP install -q torch==2.13.0 || $PIP install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
  $PIP install -q -r requirements.txt
  [ $DEV = 1 ] && $PIP install -q -r requirements-dev.txt
  touch "$stamp"
fi
if [ $DEV = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  # the browser tests drive Debian's Chromium through Playwright (no browser download)
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "setup: install Debian's chromium (sudo apt-get install chromium) for the browser tests" >&2
  fi
fi
if [ $DEV = 1 ]; then
  # optional (#24): Flower + hivemind in .venv-scaleout (flwr pins fastapi below Gradio's);
  # measured 3.5 min the first time on 2 cores, a no-op after
  bash scripts/setup_scaleout.sh || echo "setup: federated/decentralized engines not installed (see above)" >&2
fi
if [ $GGUF = 1 ]; then
  # optional: a machine without cmake/a compiler still gets the studio; GGUF tests then skip, saying why
  bash scripts/setup_gguf.sh || echo "setup: GGUF export not installed (see the message above)" >&2
fi
