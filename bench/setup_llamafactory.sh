#!/usr/bin/env bash
# Make LlamaFactory's own venv for bench/vs_llamafactory.py, outside the studio's venv
# (it pins its own transformers/trl/peft versions; they must not touch .venv/).
#
#     bash bench/setup_llamafactory.sh          # creates .bench-venv/ (git-ignored)
#     BENCH_VENV=/tmp/lf bash bench/setup_llamafactory.sh
#
# torch goes in first, from the local CPU wheel (pip would otherwise pull the
# multi-GB CUDA build as a dependency of llamafactory).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BENCH_VENV:-.bench-venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install "torch==2.13.0"
# Pin torch through a constraint so no dependency (torchvision, torchaudio, ...) upgrades it
# to a CUDA build; the other packages resolve to versions built for this torch.
echo "torch==2.13.0" > "$VENV/constraints.txt"
"$VENV/bin/python" -m pip install -c "$VENV/constraints.txt" llamafactory
# The torchvision/torchaudio wheels pip finds are not built against this CPU torch
# ("operator torchvision::nms does not exist", "Could not load ... _torchaudio.abi3.so"),
# and text SFT needs neither: remove them. LlamaFactory's mm_plugin still does a bare
# `import torchaudio` at start-up, so an empty stand-in package answers that import; any
# audio code path would fail loudly on it (no attributes), none runs for text SFT.
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$SITE/torchaudio"
echo '"""Empty stand-in (bench/setup_llamafactory.sh): no audio in text-only benchmarks."""' \
  > "$SITE/torchaudio/__init__.py"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
for name in ("llamafactory", "torch", "transformers", "trl", "peft", "datasets", "accelerate"):
    try:
        print(f"{name:<13} {m.version(name)}")
    except m.PackageNotFoundError:
        print(f"{name:<13} (missing)")
EOF
echo "LlamaFactory venv ready: $VENV (run: .venv/bin/python bench/vs_llamafactory.py)"
