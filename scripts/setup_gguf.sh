#!/usr/bin/env bash
# GGUF export's parts, from the package registry only (nothing to clone): llama-cpp-python
# built from its source distribution (it compiles llama.cpp: the quantiser and the runtime
# the export is verified in), and the converter that distribution vendors
# (vendor/llama.cpp: convert_hf_to_gguf.py, conversion/, gguf-py/), kept where
# studio/ship/gguf.py looks for it. The built wheel is cached: a second setup (or a new
# .venv) installs it in seconds. Called by scripts/setup.sh --gguf and --dev.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PIP="$PY -m pip"
VER=$(sed -n 's/^llama-cpp-python==//p' requirements-gguf.txt)
WHEELS=${STUDIO_WHEELS:-$HOME/.cache/studio-wheels}
TOOLS=${STUDIO_GGUF_TOOLS:-$HOME/.cache/studio/llama.cpp}
SDIST_DIR=$WHEELS/sdist
SDIST=$SDIST_DIR/llama_cpp_python-$VER.tar.gz

fetch_sdist() {
  [ -f "$SDIST" ] || $PIP download -q --no-deps --no-binary :all: -d "$SDIST_DIR" "llama-cpp-python==$VER"
}

installed() {
  $PY -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$VER')" 2>/dev/null
}

# the converter's own imports (sentencepiece: it tries a tokenizer.model first)
$PY -c "import sentencepiece" 2>/dev/null || grep -v '^llama-cpp-python' requirements-gguf.txt | $PIP install -q -r /dev/stdin

if ! installed; then
  wheel=$(ls "$WHEELS"/llama_cpp_python-"$VER"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    for tool in cmake c++; do
      command -v $tool >/dev/null || { echo "setup --gguf: building llama.cpp needs $tool (apt-get install cmake g++)" >&2; exit 1; }
    done
    fetch_sdist
    echo "setup: building llama-cpp-python $VER (compiles llama.cpp; a few minutes, once)" >&2
    start=$(date +%s)
    # CPU build for this machine's instruction set (the wheel is cached per machine);
    # no CUDA/Metal/BLAS/curl: the studio loads local files and verifies on CPU
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF}" \
      CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PIP wheel -q --no-deps -w "$WHEELS" "$SDIST"
    echo "setup: llama-cpp-python built in $(( $(date +%s) - start )) s" >&2
    wheel=$(ls "$WHEELS"/llama_cpp_python-"$VER"-*.whl | head -1)
  fi
  $PIP install -q "$wheel"
fi

if [ ! -f "$TOOLS/.from-llama-cpp-python-$VER" ]; then
  fetch_sdist
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  top=llama_cpp_python-$VER/vendor/llama.cpp
  tar -xzf "$SDIST" -C "$tmp" "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py" "$top/LICENSE"
  touch "$tmp/$top/.from-llama-cpp-python-$VER"
  mkdir -p "$(dirname "$TOOLS")"
  rm -rf "$TOOLS.new" && mv "$tmp/$top" "$TOOLS.new" && rm -rf "$TOOLS" && mv "$TOOLS.new" "$TOOLS"
fi
