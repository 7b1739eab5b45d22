#!/usr/bin/env bash
# .venv-scaleout: flwr + hivemind (requirements-scaleout.txt) beside .venv, seeing .venv's
# packages behind its own through a .pth line (torch/transformers/peft are shared; Flower's
# pinned fastapi/starlette/uvicorn/typer stay out of Gradio's way). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sha256sum requirements-scaleout.txt | cut -c1-16)
[ -f .venv-scaleout/.installed-$want ] && exit 0
base=$(.venv/bin/python -c "import sys; print(sys._base_executable)")
[ -x .venv-scaleout/bin/python ] || "$base" -m venv .venv-scaleout
sp=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
own=$(.venv-scaleout/bin/python -c "import site; print(site.getsitepackages()[0])")
echo "import site; site.addsitedir('$sp')" > "$own/zz_studio_base.pth"
.venv-scaleout/bin/python -m pip install -q -r requirements-scaleout.txt
touch .venv-scaleout/.installed-$want
