"""GRPO on the shipped arithmetic prompts with the exact_match preset: groups are
sampled and scored, the policy comes to answer the prompts it trains on (reward rose),
the KL to the reference is logged and stays bounded (beta > 0), and the reward metrics
reach metrics.jsonl.

The issue's held-out target (exact match on unseen prompts at least doubles) is
tests/test_methods_rl_truth.py, a truth test: it needs minutes of training from a
half-taught policy. From this short SFT (~15% held-out) GRPO barely moves held-out
accuracy (0.15 -> 0.17 in 300 steps at lr 1e-4, lower at higher rates): too few of its
samples are right to learn the sums from. On 16 prompts it learns them."""
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
    from studio.rewards import exact_match

    scores = exact_match(greedy_replies(folder, rows, max_new_tokens), answer=[r["answer"] for r in rows])
    return sum(scores) / len(scores)


def greedy_replies(folder, rows: list[dict], max_new_tokens: int) -> list[str]:
    """The saved model's greedy reply to each row's prompt, through the studio's loader and
    the chat template (shared by the RL tests that score replies)."""
    import torch

    from studio.model import build_or_load, load_tokenizer
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
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


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
def test_grpo_learns_its_prompts_with_bounded_kl_and_logs_its_metrics(sft_policy, train_run, tmp_path):
    rows = read_rows(PROMPTS_TRAIN)[:16]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = exact_match_rate(sft_policy, rows)
    spec = grpo_spec(sft_policy, data=prompts, steps=100)
    spec.train.batch_size, spec.train.learning_rate, spec.train.log_every = 64, 5e-4, 5  # 8 prompts x 8 samples
    run_dir = train_run(spec)
    after = exact_match_rate(run_dir / "final", rows)
    print(f"grpo: exact match on its 16 prompts {before:.3f} -> {after:.3f}")
    assert after >= before + 0.25, (before, after)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train" and "reward" in r]
    for key in ("reward", "reward_std", "kl", "rewards/exact_match/mean", "completions/mean_length"):
        assert key in train[-1], key
    rewards = [r["reward"] for r in train]
    quarter = len(rewards) // 4
    early, late = sum(rewards[:quarter]) / quarter, sum(rewards[-quarter:]) / quarter
    assert late > early + 0.1, rewards  # the sampled reward rose too
    kls = [r["kl"] for r in train if r.get("kl") is not None]
    print("kl", [round(k, 2) for k in kls])
    assert max(kls) > 0 and max(kls) < 2.0, kls


def test_generation_batch_must_hold_whole_groups(tmp_path):
    from studio.methods.context import TrainContext
    from studio.methods.grpo import generation_batch

    ctx = TrainContext(spec=grpo_spec("unused"), run_dir=tmp_path)
    ctx.spec.train.batch_size, ctx.spec.method.group_size = 12, 8
    with pytest.raises(ValueError, match=r"train.batch_size.*group_size=8.*batch_size=16"):
        generation_batch(ctx)
    ctx.spec.train.batch_size = 16
    assert generation_batch(ctx) == 16
    ctx.spec.train.num_processes, ctx.spec.train.nnodes = 2, 3  # every process of every node
    assert generation_batch(ctx) == 16 * 6


def test_rewards_come_from_presets_only():
    from studio.methods.reward_model import reward_functions

    funcs = reward_functions("exact_match, length_penalty")
    assert [f.__name__ for f in funcs] == ["exact_match", "length_penalty"]
    assert funcs[0](["7", "8"], answer=["7", "7"]) == [1.0, 0.0]
    for bad in ("", "import os", "lambda c, **k: [1.0]"):
        with pytest.raises(ValueError, match="method.reward"):
            reward_functions(bad)
