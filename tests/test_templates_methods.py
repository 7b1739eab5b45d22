"""SFT (assistant-only), DPO and GRPO on models that bring the published chat templates of
five families (tests/chat_templates.py), none with {% generation %} marks: each trains
(finite losses; SFT's loss falls), and SFT says in its log that the mask was found by
prefix rendering and trains only the assistant's tokens, where it used to train the whole
conversation, system prompt included, without a word."""
from __future__ import annotations

import json
import math

import pytest

from studio.metrics import read_all
from tests.chat_templates import FAMILIES, family_model_dir
from tests.conftest import spec_from

SYSTEM = "You answer sums with the number only."


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: family_model_dir(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    """Conversations with a system prompt and two exchanges."""
    rows = []
    for i in range(24):
        rows.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"What is {i} + {i % 5}?"},
            {"role": "assistant", "content": str(i + i % 5)},
            {"role": "user", "content": "And twice that?"},
            {"role": "assistant", "content": str(2 * (i + i % 5))}]})
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec(model_dir, method: dict, data: str, steps: int, lr: float, batch: int = 8):
    return spec_from(
        name=f"{method['name']}-template",
        model={"source": "pretrained", "name_or_path": str(model_dir), "max_seq_len": 96},
        data={"sources": [{"path": str(data)}], "eval_fraction": 0.0},
        method={"regime": "full", **method},
        train={"max_steps": steps, "batch_size": batch, "learning_rate": lr, "warmup_steps": 0,
               "scheduler": "none", "log_every": 1, "seed": 0},
    )


def losses(run_dir, key: str = "loss") -> list[float]:
    return [r[key] for r in read_all(run_dir) if key in r]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sft_assistant_only(family, model_dirs, chat_file, train_run, capsys):
    run = train_run(spec(model_dirs[family], {"name": "sft"}, chat_file, steps=12, lr=1e-2))
    log = capsys.readouterr().out
    assert "found by prefix rendering" in log
    # two answers of 1-2 digits and two end-of-turn tokens per row: a few % of the tokens
    line = next(x for x in log.splitlines() if "training tokens trained" in x)
    trained, total = (int(w) for w in line.split("Loss mask: ")[1].split(" training")[0].split(" of "))
    assert 0 < trained < total * 0.2, line
    values = losses(run)
    assert values and all(math.isfinite(v) for v in values)
    assert sum(values[-3:]) / 3 < sum(values[:3]) / 3, values


@pytest.mark.parametrize("family", list(FAMILIES))
def test_dpo(family, model_dirs, train_run):
    run = train_run(spec(model_dirs[family], {"name": "dpo"}, "assets/data/arith_prefs_train.jsonl",
                         steps=2, lr=1e-3, batch=4))
    values = losses(run)
    assert values and all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_grpo(family, model_dirs, train_run):
    method = {"name": "grpo", "reward": "exact_match", "group_size": 4, "max_new_tokens": 4, "temperature": 1.0}
    run = train_run(spec(model_dirs[family], method, "assets/data/arith_prompts_train.jsonl",
                         steps=2, lr=1e-3, batch=4))
    values = losses(run)
    assert values and all(math.isfinite(v) for v in values)
    assert any("reward" in k for r in read_all(run) for k in r)
