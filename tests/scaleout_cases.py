"""Shared by the scale-out tests (#24): a tiny saved base, a spec, and the worker run as
the app runs it (a subprocess that re-executes itself with .venv-scaleout's interpreter)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio import jobs
from studio.scaleout import env
from tests.conftest import TINY_MODEL, spec_from

needs_engines = pytest.mark.skipif(not (env.has_engines() or (env.VENV / "bin" / "python").exists()),
                                   reason="flwr/hivemind not installed: make setup-scaleout")


def tiny_base(folder: Path) -> Path:
    """A random ~1M-parameter Llama saved in transformers format, so adapters name their base."""
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(**TINY_MODEL)
    tok = load_tokenizer(spec)
    model = build_or_load(spec, tok, None)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def scaleout_spec(base: Path, sources: list[str], train: dict, name: str = "scale", max_rows=None):
    return spec_from(name=name, model={"source": "pretrained", "name_or_path": str(base)},
                     data={"sources": [{"path": s} for s in sources], "eval_fraction": 0.1, "max_rows": max_rows},
                     method={"name": "sft", "regime": "lora", "lora_r": 8, "lora_dropout": 0.0},
                     train={"batch_size": 8, "learning_rate": 3e-3, "log_every": 1, **train})


def start_worker(spec, runs: Path):
    run_dir = jobs.create_run(spec, runs)
    proc = subprocess.Popen([sys.executable, "-m", "studio.worker", str(run_dir)],
                            stdout=open(run_dir / "train.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return run_dir, proc


def finished(run_dir: Path, proc, timeout: float = 400) -> list[dict]:
    proc.wait(timeout=timeout)
    st = jobs.read_status(run_dir)
    log = (run_dir / "train.log").read_text(errors="replace")[-3000:]
    assert proc.returncode == 0 and st.get("state") == "completed", f"{st.get('error')}\n{log}"
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def adapter(final: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(final / "adapter_model.safetensors"))
