"""The second shipped RL task end to end (#23): the recipe extract-json-sft, then
extract-json-grpo starting from it through `run:extract-json-sft` (resolved in the runs
folder in use, refused with "train extract-json-sft first" when there is none), and the
advisor pointing to the task as the worked example of online RL with a rule-based reward."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio import jobs, runref
from studio.advisor import Answers, advise
from studio.presets import load_run
from studio.spec import RunSpec

ROOT = Path(__file__).resolve().parent.parent


def studio_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def runs_named(runs: Path, name: str) -> list[Path]:
    return sorted(p for p in runs.iterdir() if (p / "spec.yaml").is_file() and RunSpec.load(p / "spec.yaml").name == name)


def max_weight_change(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def test_sft_recipe_then_grpo_recipe_through_the_cli(tmp_path):
    runs = tmp_path / "runs"
    # before the SFT run exists: refused, saying what to train first, and no run dir made
    early = studio_cli("train", "extract-json-grpo", "--runs-dir", str(runs))
    assert early.returncode == 2, early.stderr
    assert "train extract-json-sft first" in early.stderr and str(runs.resolve()) in early.stderr
    assert not any(runs.iterdir())

    start = time.time()
    sft = studio_cli("train", "extract-json-sft", "--set", "train.max_steps=4", "--set", "train.eval_every=0",
                     "--set", "train.warmup_steps=0", "--set", "train.log_every=1", "--runs-dir", str(runs))
    assert sft.returncode == 0, sft.stdout + sft.stderr
    grpo = studio_cli("train", "extract-json-grpo", "--set", "train.max_steps=1", "--set", "train.batch_size=8",
                      "--set", "method.max_new_tokens=16", "--set", "train.log_every=1", "--runs-dir", str(runs))
    assert grpo.returncode == 0, grpo.stdout + grpo.stderr
    print(f"SFT 4 steps + GRPO 1 step through the CLI: {time.time() - start:.1f} s")

    (sft_run,), (grpo_run,) = runs_named(runs, "extract-json-sft"), runs_named(runs, "extract-json-grpo")
    # the GRPO run records the exact folder it started from: the SFT run's final/
    assert RunSpec.load(grpo_run / "spec.yaml").model.name_or_path == str((sft_run / "final").resolve())
    # and it trained from those weights: one step at lr 1.5e-4 moves no weight by 1e-3, while
    # any other start (a fresh init, another run) differs from the SFT weights by far more
    assert max_weight_change(sft_run / "final", grpo_run / "final") < 1e-3
    records = [json.loads(line) for line in (grpo_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    assert train and "rewards/json_valid/mean" in train[0] and "rewards/json_match/mean" in train[0]


def test_shipped_recipes_chain():
    assert load_run("extract-json-grpo").model.name_or_path == "run:extract-json-sft"
    sft = load_run("extract-json-sft")
    assert sft.name == "extract-json-sft" and sft.method.name == "sft"
    assert sft.data.sources[0].path == "assets/data/extract_sft_train.jsonl"
    assert not sft.validate()


# -- run:<name> against fake run folders ----------------------------------------------------------

def fake_run(runs: Path, run_id: str, name: str, state: str, final: bool) -> Path:
    run_dir = runs / run_id
    run_dir.mkdir(parents=True)
    RunSpec.from_dict({"name": name}).save(run_dir / "spec.yaml")
    jobs.write_status(run_dir, state=state)
    if final:
        (run_dir / "final").mkdir()
        (run_dir / "final" / "model.safetensors").write_bytes(b"")
    return run_dir


def grpo_spec(ref: str) -> RunSpec:
    data = load_run("extract-json-grpo").to_dict()
    data["model"]["name_or_path"] = ref
    return RunSpec.from_dict(data)


def test_run_reference_is_the_newest_finished_run_of_that_name(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "20260101-000000-extract-json-sft-aaaa", "extract-json-sft", "completed", True)
    wanted = fake_run(runs, "20260102-000000-extract-json-sft-bbbb", "extract-json-sft", "completed", True)
    fake_run(runs, "20260103-000000-extract-json-sft-cccc", "extract-json-sft", "failed", False)  # no model
    fake_run(runs, "20260104-000000-other-dddd", "other", "completed", True)  # another recipe
    resolved = runref.resolve(grpo_spec("run:extract-json-sft"), runs)
    assert resolved.model.name_or_path == str((wanted / "final").resolve())
    # a run id names that run exactly, even when a newer one of its name exists
    old = runref.resolve(grpo_spec("run:20260101-000000-extract-json-sft-aaaa"), runs)
    assert old.model.name_or_path.endswith("20260101-000000-extract-json-sft-aaaa/final")
    # the runs folder comes from STUDIO_RUNS_DIR when none is given (what the app and CLI set)
    os.environ["STUDIO_RUNS_DIR"] = str(runs)
    try:
        assert runref.resolve(grpo_spec("run:extract-json-sft"), None).model.name_or_path == str(
            (wanted / "final").resolve())
    finally:
        del os.environ["STUDIO_RUNS_DIR"]
    plain = grpo_spec("assets/tokenizer")
    assert runref.resolve(plain, runs) is plain  # anything else is left as written


def test_run_reference_without_a_finished_run_is_refused_with_the_fix(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "20260103-000000-extract-json-sft-cccc", "extract-json-sft", "failed", False)
    with pytest.raises(jobs.JobError, match="has no finished model yet.*20260103-000000-extract-json-sft-cccc"):
        runref.resolve(grpo_spec("run:extract-json-sft"), runs)
    with pytest.raises(jobs.JobError, match="names no run in .*: train missing-sft first"):
        runref.resolve(grpo_spec("run:missing-sft"), runs)
    with pytest.raises(jobs.JobError, match="names no run"):
        jobs.create_run(grpo_spec("run:missing-sft"), runs)  # the launch path resolves it before anything
    assert [p.name for p in runs.iterdir()] == ["20260103-000000-extract-json-sft-cccc"]
    with pytest.raises(jobs.JobError, match="write run:<recipe name or run id>"):
        runref.resolve(grpo_spec("run:"), runs)


# -- the advisor points to the task ----------------------------------------------------------------

def codes(answers: Answers) -> set[str]:
    return {w.code for w in advise(answers).warnings}


@pytest.mark.parametrize("answers", [Answers(goal="reasoning", data_kind="prompt"),
                                     Answers(goal="reasoning"),
                                     Answers(goal="preferences", data_kind="prompt")])
def test_advisor_names_the_extraction_task_for_a_checkable_reward(answers):
    advice = advise(answers)
    assert advice.method == "grpo"
    example = next(w for w in advice.warnings if w.code == "worked_example")
    text = example.message + " " + example.fix
    for must in ("extract-json-sft", "extract-json-grpo", "json_valid", "json_match", "reward try"):
        assert must in text
    assert example.level == "info"


@pytest.mark.parametrize("answers", [Answers(goal="reasoning", has_reward_model=True),  # it has a reward
                                     Answers(goal="reasoning", data_kind="conversation", checkable=False),
                                     Answers(goal="instructions")])
def test_advisor_leaves_the_example_out_where_it_does_not_fit(answers):
    assert "worked_example" not in codes(answers)


def test_advise_cli_shows_the_example_for_the_extraction_data():
    out = studio_cli("advise", "--goal", "reasoning", "--data", "assets/data/extract_prompts_train.jsonl",
                     "--device-memory-gb", "16", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    warnings = json.loads(out.stdout)["warnings"]
    assert any(w["code"] == "worked_example" and "extract-json-grpo" in w["message"] for w in warnings)


def test_the_estimate_reads_the_referenced_runs_config(tmp_path, monkeypatch):
    from studio.estimate.config import EstimateError, read_config

    runs = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS_DIR", str(runs))
    with pytest.raises(EstimateError, match="train extract-json-sft first"):
        read_config("run:extract-json-sft")
    run_dir = fake_run(runs, "20260102-000000-extract-json-sft-bbbb", "extract-json-sft", "completed", True)
    (run_dir / "final" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 96}))
    assert read_config("run:extract-json-sft")["hidden_size"] == 96
