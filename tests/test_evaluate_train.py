"""train.eval_tasks (#21): a held-out generation task scored at each evaluation during
training, streamed into metrics.jsonl beside eval loss; its last value is what
`studio eval` gives on the final model for the same examples."""
from __future__ import annotations

import json

import pytest

from studio.evaluate import background
from studio.evaluate.callback import MAX_EXAMPLES, MAX_NEW_TOKENS
from studio.evaluate.runner import run_eval
from studio.evaluate.spec import EvalSettings, EvalSpec, TaskSpec
from studio.presets import load_run
from tests.conftest import run_in_process

TEST_FILE = "assets/data/arith_sft_test.jsonl"
KEY = "heldout/arith_sft_test/exact_match"


def test_eval_task_streams_into_metrics_and_matches_studio_eval(tmp_path):
    spec = load_run("quickstart").with_overrides(["train.max_steps=40", "train.eval_every=20", "train.eval_steps=1",
                                                  f"train.eval_tasks={TEST_FILE}"])
    run_dir = run_in_process(spec, tmp_path / "runs")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if KEY in r]
    assert [r["step"] for r in scored] == [20, 40] and all(r["kind"] == "eval" for r in scored)
    assert all(0.0 <= r[KEY] <= 1.0 for r in scored)
    check = EvalSpec(models=[f"run:{run_dir.name}"], tasks=[TaskSpec(name="t", kind="generate", data=TEST_FILE,
                                                                     max_examples=MAX_EXAMPLES)],
                     settings=EvalSettings(max_new_tokens=MAX_NEW_TOKENS))
    summary = run_eval(background.create(check, tmp_path / "runs"), tmp_path / "runs")
    assert scored[-1][KEY] == pytest.approx(summary["scores"]["t"][run_dir.name]["exact_match"]["value"])


def test_a_task_file_without_references_is_refused_naming_the_field(tmp_path):
    from studio.evaluate.callback import load_tasks

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt here"}\n')
    spec = load_run("quickstart").with_overrides([f"train.eval_tasks={bad}"])
    with pytest.raises(ValueError, match="train.eval_tasks"):
        load_tasks(spec)
