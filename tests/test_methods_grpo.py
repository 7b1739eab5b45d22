"""GRPO on the shipped arithmetic prompts with the exact_match preset: groups are
sampled and scored, the KL to the reference is logged and stays bounded (beta > 0), the
policy keeps its held-out skill, and the reward metrics reach metrics.jsonl.

Not yet shown here: the issue's "held-out exact match at least doubles". From the
session's tiny SFT'd policy (~11% held-out exact match) a few dozen GRPO steps on CPU
left it unchanged (0.11 -> 0.11 over 32 steps at lr 3e-4): most groups score all zero,
so there is little advantage signal to learn from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import spec_from

PROMPTS_TRAIN = "assets/data/arith_prompts_train.jsonl"
PROMPTS_TEST = "assets/data/arith_prompts_test.jsonl"


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def exact_match_rate(folder, rows: list[dict], max_new_tokens: int = 4) -> float:
    """Greedy replies scored by the same preset GRPO trains on."""
    import torch

    from studio.model import build_or_load, load_tokenizer
    from studio.rewards import exact_match
    from studio.spec import ModelSpec

    spec = ModelSpec(source="pretrained", name_or_path=str(folder))
    tokenizer = load_tokenizer(spec)
    model = build_or_load(spec, tokenizer).eval()
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                           tokenize=False) for r in rows]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    replies = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    scores = exact_match(replies, answer=[r["answer"] for r in rows])
    return sum(scores) / len(scores)


def grpo_spec(policy, reward: str = "exact_match", steps: int = 16, data: str = PROMPTS_TRAIN, **method):
    return spec_from(
        name="grpo", model={"source": "pretrained", "name_or_path": str(policy), "max_seq_len": 128},
        data={"sources": [{"path": str(data)}], "eval_fraction": 0.0},
        method={"name": "grpo", "reward": reward, "group_size": 8, "temperature": 1.0, "beta": 0.04,
                "max_new_tokens": 4, **method},
        train={"max_steps": steps, "batch_size": 16, "learning_rate": 3e-4, "warmup_steps": 0,
               "scheduler": "none", "log_every": 2, "seed": 0},
    )


@pytest.mark.slow
def test_grpo_trains_with_bounded_kl_and_logs_its_metrics(sft_policy, train_run, tmp_path):
    held_out = read_rows(PROMPTS_TEST)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in read_rows(PROMPTS_TRAIN)[:16]))
    before = exact_match_rate(sft_policy, held_out)
    run_dir = train_run(grpo_spec(sft_policy, data=prompts))
    after = exact_match_rate(run_dir / "final", held_out)
    print(f"grpo: held-out exact match {before:.3f} -> {after:.3f}")
    assert after >= before / 2, (before, after)  # the KL term keeps the policy near its start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train" and "reward" in r]
    for key in ("reward", "reward_std", "kl", "rewards/exact_match/mean", "completions/mean_length"):
        assert key in train[-1], key
    kls = [r["kl"] for r in train if r.get("kl") is not None]
    assert max(kls) > 0 and max(kls) < 2.0, kls  # measured: peaks near 1.0, ends below 0.1


def test_generation_batch_must_hold_whole_groups(tmp_path):
    from studio.methods.context import TrainContext
    from studio.methods.grpo import generation_batch

    ctx = TrainContext(spec=grpo_spec("unused"), run_dir=tmp_path)
    ctx.spec.train.batch_size, ctx.spec.method.group_size = 12, 8
    with pytest.raises(ValueError, match=r"train.batch_size.*group_size=8.*batch_size=16"):
        generation_batch(ctx)
    ctx.spec.train.batch_size = 16
    assert generation_batch(ctx) == 16


def test_rewards_come_from_presets_only():
    from studio.methods.grpo import reward_functions

    funcs = reward_functions("exact_match, length_penalty")
    assert [f.__name__ for f in funcs] == ["exact_match", "length_penalty"]
    assert funcs[0](["7", "8"], answer=["7", "7"]) == [1.0, 0.0]
    for bad in ("", "import os", "lambda c, **k: [1.0]"):
        with pytest.raises(ValueError, match="method.reward"):
            reward_functions(bad)
