"""`studio advise`: the recommendation, path and reasons as JSON and as text; errors exit 2."""
from __future__ import annotations

import json

def run_cli(capsys, *args) -> tuple[int, str]:
    from studio.cli import main

    code = main(["advise", *args])
    return code, capsys.readouterr().out


def test_cli_json(capsys):
    code, out = run_cli(capsys, "--goal", "preferences", "--data", "assets/data/arith_prefs_train.jsonl",
                        "--model", "org/Model-7B-Instruct", "--device-memory-gb", "24", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"method", "regime", "path", "runner_up"} <= set(data)
    assert (data["method"], data["regime"]) == ("dpo", "lora")
    assert data["path"][0]["node_id"] == "goal" and all(s["reason"] for s in data["path"])
    assert data["runner_up"]["method"] == "simpo"
    assert data["answers"]["data_kind"] == "preference" and data["answers"]["data_rows"] == 1271


def test_cli_text_and_errors(capsys):
    code, out = run_cli(capsys, "--goal", "reasoning", "--device-memory-gb", "8")
    assert code == 0
    assert "Recommended: GRPO" in out and "Runner-up: PPO" in out and "What scores answers?" in out
    code, _ = run_cli(capsys, "--data", "no/such/file.jsonl")
    assert code == 2
