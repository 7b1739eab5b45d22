"""The modules the UI and the CLI import at start-up stay light: no torch, transformers,
trl, peft or datasets until a run, a chat or a tokenizer needs them (the UI's first
paint and every `studio` command would otherwise wait seconds for them)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "trl", "peft", "datasets")

# what to run in a fresh interpreter: imports, plus a call that must stay light too
CASES = {
    "ui": "import studio.ui.app",
    "data": "import studio.data, studio.data.preview, studio.data.cli; assert callable(studio.data.preview)",
    "estimate": ("import studio.estimate as e; from studio.spec import ModelSpec; "
                 "e.count_parameters(ModelSpec(vocab_size=100)); e.estimate_from_source('llama-1b')"),
    "advisor": ("import studio.advisor as a, studio.advisor.cli, studio.advisor.flowchart as f; "
                "from studio.presets import default_spec; f.svg(a.advise(a.infer_answers(default_spec())))"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_import_stays_light(name):
    code = f"import sys; {CASES[name]}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "[]", out.stdout
