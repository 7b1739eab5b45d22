"""The lm-evaluation-harness bridge: a task shipped in assets/eval runs through the studio
on the model it loaded and gives the accuracy lm-eval's own CLI gives on the same folder.
Offline: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE (set in conftest) hold for both."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.evaluate import background
from studio.evaluate.runner import run_eval
from studio.evaluate.spec import EvalSpec, TaskSpec
from tests.conftest import ROOT, TINY_MODEL

TASK = "studio_arith_mc"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny Llama with seeded random weights and the studio's tokenizer, saved as a folder."""
    from transformers import set_seed

    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(**TINY_MODEL)
    tok = load_tokenizer(spec)
    set_seed(3)
    model = build_or_load(spec, tok, None)
    out = tmp_path_factory.mktemp("lm") / "model"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def test_studio_bridge_matches_lm_evals_own_cli(model_dir, tmp_path):
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1" and os.environ.get("HF_HUB_OFFLINE") == "1"
    spec = EvalSpec(models=[str(model_dir)], tasks=[TaskSpec(name="mc", kind="lm_eval", lm_tasks=[TASK])])
    eval_dir = background.create(spec, tmp_path / "runs")
    summary = run_eval(eval_dir, tmp_path / "runs")
    ours = summary["scores"]["mc"][model_dir.name]
    assert ours["acc"]["n"] == 224 and ours["acc"]["stderr"] > 0

    out = tmp_path / "cli"
    cli = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                          f"pretrained={model_dir},dtype=float32", "--tasks", TASK, "--include_path", "assets/eval",
                          "--device", "cpu", "--batch_size", "16", "--output_path", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert cli.returncode == 0, cli.stderr[-3000:]
    result = json.loads(next(out.rglob("results_*.json")).read_text())["results"][TASK]
    assert ours["acc"]["value"] == pytest.approx(result["acc,none"], abs=1e-9)
    assert ours["acc_norm"]["value"] == pytest.approx(result["acc_norm,none"], abs=1e-9)
    # the per-document rows behind it are the studio's too: their mean is lm-eval's acc
    rows = [r for r in background.read_examples(eval_dir) if r["task"] == "mc"]
    assert sum(r["scores"]["acc"] for r in rows) / len(rows) == pytest.approx(result["acc,none"])


def test_catalogue_notes_benchmarks_without_offline_data():
    from studio.evaluate.lmeval import catalogue

    rows = {r["task"]: r for r in catalogue()}
    assert rows[TASK]["offline"] and rows["studio_general_probe"]["offline"]
    assert "mmlu" in rows and "gsm8k" in rows
    for name in ("mmlu", "hellaswag"):
        if not rows[name]["offline"]:
            assert "not available offline" in rows[name]["note"]


def test_an_unknown_or_unavailable_lm_task_is_refused(tmp_path, model_dir):
    for name, needle in (("no_such_task", "not a task the studio knows"), ("mmlu", "offline")):
        spec = EvalSpec(models=[str(model_dir)], tasks=[TaskSpec(kind="lm_eval", lm_tasks=[name])])
        with pytest.raises(ValueError, match=needle):
            background.create(spec, tmp_path / "runs")
