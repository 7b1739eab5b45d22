"""The reward playground's sampled completions (#23): `reward try --run` draws N replies
of a run's model on K prompts of a data file and scores each against its own row's
answer; the Method tab's "Sample from the run" does the same on its click. The run is the
session's short-SFT arithmetic policy (tests/conftest.py), named as people name runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.rewards import closeness, exact_match
from tests.test_methods_grpo import read_rows

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = "assets/data/arith_prompts_test.jsonl"


def reward_try(*args: str, runs_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    extra = ["--runs-dir", str(runs_dir)] if runs_dir else []
    return subprocess.run([sys.executable, "-m", "studio", "reward", "try", *args, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def greedy_replies(sft_policy):
    """The policy's own greedy replies to the first 3 prompts, through the Chat tab's path."""
    from studio import inference

    loaded = inference.load(str(sft_policy), device="cpu")
    settings = inference.GenerationSettings(temperature=0, max_new_tokens=8)
    return [inference.reply(loaded, row["prompt"], settings).strip() for row in read_rows(PROMPTS)[:3]]


def test_sampled_completions_are_the_runs_and_scored_against_their_rows(sft_policy, session_runs, greedy_replies):
    # the run named as a recipe is: its spec name ("policy"), looked up in the runs folder
    out = reward_try("--reward", "exact_match, closeness", "--run", "policy", "--data", PROMPTS, "--prompts", "3",
                     "--samples", "2", "--temperature", "0", "--max-new-tokens", "8", "--json", runs_dir=session_runs)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["model"] == str(sft_policy.resolve())
    rows, data = got["rows"], read_rows(PROMPTS)[:3]
    assert len(rows) == 6 and got["groups"] == 3
    for i, row in enumerate(rows):
        source = data[i // 2]
        assert row["prompt"] == source["prompt"]
        # greedy: both samples of a prompt are the model's own reply (as the Chat tab gives it)
        assert row["completion"] == greedy_replies[i // 2]
        # each scored against its own row's answer, by the library's functions
        assert row["scores"]["exact_match"] == exact_match([row["completion"]], answer=[source["answer"]])[0]
        assert row["scores"]["closeness"] == pytest.approx(closeness([row["completion"]],
                                                                     answer=[source["answer"]])[0])
        assert row["total"] == pytest.approx(row["scores"]["exact_match"] + row["scores"]["closeness"])
    assert got["flat_groups"] == 3  # greedy samples never differ: GRPO would learn nothing (and it says so)


def test_sampling_at_a_temperature_gives_groups_that_differ(sft_policy):
    args = ["--reward", "closeness", "--run", str(sft_policy.parent), "--data", PROMPTS, "--prompts", "2",
            "--samples", "6", "--temperature", "1.5", "--max-new-tokens", "8", "--seed", "3"]
    table = reward_try(*args)
    assert table.returncode == 0, table.stderr
    assert f"12 completions of {sft_policy.resolve()}" in table.stdout
    assert "groups with no spread in total (GRPO learns nothing from them)" in table.stdout
    got = json.loads(reward_try(*args, "--json").stdout)
    assert len(got["rows"]) == 12
    assert len({r["completion"] for r in got["rows"][:6]}) > 1  # a group at temperature 1.5 is not six copies
    assert got["flat_groups"] < 2 or len({r["total"] for r in got["rows"]}) == 1


@pytest.mark.parametrize("args, words", [
    (["--run", "no-such-run"], "names no run in"),
    (["--run", "policy", "--prompts", "0"], "prompts: sample on 1 to 64"),
    (["--run", "policy", "--data", "assets/data/nope.jsonl"], "data: 'assets/data/nope.jsonl' does not exist"),
    (["--run", "policy", "--completion", "12"], "not both"),
    ([], "--completion, repeated) or a run"),
])
def test_sampling_refusals_name_the_field(args, words, tmp_path):
    out = reward_try("--reward", "exact_match", *args, runs_dir=tmp_path)
    assert out.returncode == 2 and words in out.stderr, out.stderr


def test_a_bad_reward_is_refused_before_a_model_loads(tmp_path):
    out = reward_try("--reward", "regex:pattern=(", "--run", "no-such-run", runs_dir=tmp_path)
    assert out.returncode == 2 and "method.reward" in out.stderr and "no run" not in out.stderr


def test_playground_sample_and_score(sft_policy, session_runs, greedy_replies):
    from studio.ui import reward_playground

    table, message = reward_playground.sample_score("exact_match", "policy", PROMPTS, 3, 2, 0,
                                                    runs_dir=str(session_runs))
    assert table["headers"] == ["prompt", "completion", "total", "exact_match"]
    rows = table["value"]
    assert len(rows) == 6 and [r[1] for r in rows] == [g for g in greedy_replies for _ in range(2)]
    assert f"6 completions of {sft_policy.parent.name}" in message and "3 of 3 prompts" in message
    _, refused = reward_playground.sample_score("exact_match", "no-such-run", PROMPTS, 3, 2, 0.7,
                                                runs_dir=str(session_runs))
    assert refused.startswith("**Cannot sample:**") and "names no run" in refused
