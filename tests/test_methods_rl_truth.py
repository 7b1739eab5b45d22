"""The issue's RL target (`make test-truth`): GRPO and PPO on the shipped arithmetic
prompts, rewarded by exact match, at least double the held-out exact-match rate of a
half-taught policy, with the KL to the reference reported and bounded.

Held-out means the 224 test prompts: (a, b, phrasing) combinations the training file
never holds, so the policy has to get better at the sums, not at its training prompts.
Scored greedily by the same preset the methods train on.
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import spec_from
from tests.test_methods_grpo import PROMPTS_TEST, PROMPTS_TRAIN, exact_match_rate, greedy_replies, read_rows

# method -> (method fields, learning rate, steps, batch size); measured from the
# half-taught policy (0.205 or 0.250 held-out: two builds of it) on 2 cores.
RL_RECIPES = {
    # 16 prompts x 4 samples a step at temperature 0.7, lr 1.5e-4: measured 0.250 -> 0.585 in
    # 1200 steps (~7.5 min on one core). At lr 1e-4: 0.487 (in the test) and 0.500 after 1600
    # steps from 0.250; 0.205 -> 0.576 in 1200. Groups of 8 at temperature 1.0: 0.205 -> 0.496
    # (0.250 -> 0.420 in the test); 0.7 / 0.5 with groups of 8: 0.438 / 0.446 after 800 steps;
    # lr 2e-4: 0.402 after 800; two optimizer passes per generation (trl num_iterations=2): 0.254.
    "grpo": ({"group_size": 4, "beta": 0.04, "temperature": 0.7}, 1.5e-4, 1200, 64),
    # 64 prompts an iteration, 2 epochs of mini-batches of 16 (8 optimizer steps), lr 1.5e-4:
    # measured 0.250 -> 0.540 after 300 iterations (~3.5 min), KL to the reference max 1.24.
    # At lr 1e-4: 0.500 (exactly double; 0.205 -> 0.549); temperature 0.7: 0.504.
    "ppo": ({"ppo_epochs": 2, "mini_batch_size": 16, "kl_coef": 0.05, "temperature": 1.0}, 1.5e-4, 300, 64),
}


@pytest.fixture(scope="module")
def held_out_prompts():
    return read_rows(PROMPTS_TEST)


@pytest.fixture(scope="module")
def held_out_before(half_taught_policy, held_out_prompts):
    return exact_match_rate(half_taught_policy, held_out_prompts)


@pytest.mark.truth
@pytest.mark.parametrize("name", list(RL_RECIPES))
def test_held_out_reward_at_least_doubles_with_bounded_kl(name, half_taught_policy, held_out_prompts,
                                                          held_out_before, train_run):
    method, lr, steps, batch = RL_RECIPES[name]
    spec = spec_from(
        name=name, model={"source": "pretrained", "name_or_path": str(half_taught_policy), "max_seq_len": 128},
        data={"sources": [{"path": PROMPTS_TRAIN}], "eval_fraction": 0.0},
        method={"name": name, "reward": "exact_match", "max_new_tokens": 4, **method},
        train={"max_steps": steps, "batch_size": batch, "learning_rate": lr, "warmup_steps": 0,
               "scheduler": "none", "log_every": 10, "seed": 0},
    )
    run_dir = train_run(spec)
    after = exact_match_rate(run_dir / "final", held_out_prompts)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kls = [r["kl"] for r in records if r.get("kind") == "train" and r.get("kl") is not None]
    print(f"{name}: held-out exact match {held_out_before:.3f} -> {after:.3f}; "
          f"KL to the reference: max {max(kls):.2f}, last {kls[-1]:.2f}")
    assert 0.05 <= held_out_before <= 0.35  # the policy knows the format but not yet the sums
    assert after >= 2 * held_out_before or after >= 0.8, (held_out_before, after)
    assert len(kls) >= steps // 10 - 1 and max(kls) > 0  # reported all along, and it moved
    assert max(kls) < 2.0, kls  # bounded: the policy did not run away from the reference


# -- the second shipped task: fields of a travel request into a JSON object ----------------

EXTRACT_TRAIN = "assets/data/extract_prompts_train.jsonl"
EXTRACT_TEST = "assets/data/extract_prompts_test.jsonl"
EXTRACT_SFT = "assets/data/extract_sft_train.jsonl"


def extract_scores(folder, rows: list[dict], max_new_tokens: int = 40) -> tuple[float, float]:
    """(mean json_match, mean json_valid) of greedy replies on `rows`."""
    from studio.rewards import build

    replies = greedy_replies(folder, rows, max_new_tokens)
    (valid, match), _ = build("json_valid, json_match")
    answers = [r["answer"] for r in rows]
    return sum(match(replies, answer=answers)) / len(rows), sum(valid(replies, answer=answers)) / len(rows)


@pytest.fixture(scope="module")
def half_taught_extractor(tmp_path_factory):
    """The extract-json-sft recipe (from scratch) stopped at 46 of its steps: it answers
    about a third of the held-out requests in JSON and gets few fields right (measured on
    2 cores, one thread: json_valid 0.34, json_match 0.04; at 44 steps 0.04 / 0.00, at 48
    0.86 / 0.08, at 80 1.00 / 0.13 — the format arrives in a few steps)."""
    import yaml

    from studio.spec import RunSpec
    from tests.conftest import run_in_process

    recipe = yaml.safe_load(open("presets/recipes/extract-json-sft.yaml"))
    recipe["name"] = "half-taught-extractor"
    recipe["data"]["eval_fraction"] = 0.0
    recipe["train"].update(max_steps=46, warmup_steps=9, eval_every=0)
    return run_in_process(RunSpec.from_dict(recipe), tmp_path_factory.mktemp("extract-runs")) / "final"


@pytest.mark.truth
@pytest.mark.timeout(1800)  # 46 SFT steps and 300 GRPO steps of 40 tokens: ~4 min on 2 cores
def test_grpo_on_json_extraction_doubles_held_out_reward(half_taught_extractor, train_run):
    """The task's reward is json_valid + json_match (0..2); its held-out mean at least
    doubles. Measured: 0.38 -> 1.06 (format 0.34 -> 1.00, fields 0.04 -> 0.06), KL max 0.17.
    GRPO here teaches the format; the fields come slowly, because the policy must first
    learn to copy a word it has not seen in that slot (from the 120-step SFT policy, at
    lr 3e-4 and temperature 1.0, 300 steps took json_match 0.32 -> 0.41)."""
    held_out = read_rows(EXTRACT_TEST)
    match_before, valid_before = extract_scores(half_taught_extractor, held_out)
    before = match_before + valid_before
    spec = spec_from(
        name="extract-grpo",
        model={"source": "pretrained", "name_or_path": str(half_taught_extractor), "max_seq_len": 128},
        data={"sources": [{"path": EXTRACT_TRAIN}], "eval_fraction": 0.0},
        method={"name": "grpo", "reward": "json_valid, json_match", "group_size": 4, "beta": 0.04,
                "temperature": 0.7, "max_new_tokens": 40},
        train={"max_steps": 300, "batch_size": 32, "learning_rate": 1.5e-4, "warmup_steps": 0,
               "scheduler": "none", "log_every": 10, "seed": 0},
    )
    run_dir = train_run(spec)
    match_after, valid_after = extract_scores(run_dir / "final", held_out)
    after = match_after + valid_after
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    kls = [r["kl"] for r in train if r.get("kl") is not None]
    print(f"extract: held-out reward {before:.3f} -> {after:.3f} (json_valid {valid_before:.2f} -> "
          f"{valid_after:.2f}, json_match {match_before:.2f} -> {match_after:.2f}); KL max {max(kls):.2f}")
    # a start with the format already learned cannot double: the fixture's step count drifted
    assert 0.1 <= before <= 0.8, f"half-taught policy out of range: reward {before:.2f}"
    assert after >= 2 * before, (before, after)
    assert valid_after > 0.9  # the format component alone
    assert match_after >= match_before  # the fields did not get worse while the format was learned
    assert any("rewards/json_match/mean" in r for r in train)  # each component logged
    assert 0 < max(kls) < 2.0, kls
