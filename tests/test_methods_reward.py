"""Reward modelling: a classifier head on the SFT'd policy learns to rank preference
pairs, trl's accuracy/margin reach metrics.jsonl, and the saved run loads as a reward
function (the form GRPO and PPO call).

It trains on a small slice of the shipped pairs for several epochs and is scored on
those pairs: ranking held-out pairs needs a backbone that knows the sums, which the
session's tiny SFT'd policy (~15% exact match on held-out prompts) does not; the truth
test at the end starts from one that does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import spec_from

PREFS_TRAIN = "assets/data/arith_prefs_train.jsonl"
N_PAIRS = 32


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def pairwise_accuracy(reward, rows: list[dict]) -> float:
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    chosen = reward(prompts=prompts, completions=[[{"role": "assistant", "content": r["chosen"]}] for r in rows])
    rejected = reward(prompts=prompts, completions=[[{"role": "assistant", "content": r["rejected"]}] for r in rows])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(rows)


def reward_spec(policy: Path, pairs_file: Path, **method) -> object:
    return spec_from(
        name="reward", model={"source": "pretrained", "name_or_path": str(policy), "max_seq_len": 128},
        data={"sources": [{"path": str(pairs_file)}], "eval_fraction": 0.0},
        method={"name": "reward", **method},
        train={"max_steps": 32, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 2,
               "scheduler": "cosine", "log_every": 2, "seed": 0},
    )


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return read_rows(PREFS_TRAIN)[:N_PAIRS]


@pytest.fixture(scope="module")
def reward_run(sft_policy, pairs, tmp_path_factory) -> Path:
    from tests.conftest import run_in_process

    folder = tmp_path_factory.mktemp("reward")
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    return run_in_process(reward_spec(sft_policy, folder / "pairs.jsonl"), folder / "runs")


@pytest.mark.slow
def test_reward_model_ranks_the_pairs(reward_run, pairs):
    from studio.methods.reward_model import load_reward_model

    reward = load_reward_model(f"model:{reward_run}")
    # measured here: 0.72 (from 0.5); held-out pairs: the truth test at the end of this file
    assert pairwise_accuracy(reward, pairs) >= 0.65


@pytest.mark.slow
def test_reward_metrics_reach_metrics_jsonl(reward_run):
    records = [json.loads(line) for line in (reward_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train" and "accuracy" in r]
    assert train and all(k in train[-1] for k in ("accuracy", "margin", "mean_reward"))
    # trl's batch accuracy climbs, and the logged margin widens (measured ~0 -> 0.6)
    assert train[-1]["accuracy"] > train[0]["accuracy"]
    assert train[-1]["margin"] > train[0]["margin"] + 0.3


@pytest.mark.slow
def test_reward_model_scores_plain_text_and_names_itself(reward_run):
    from studio.methods.reward_model import load_reward_model

    reward = load_reward_model(str(reward_run / "final"))
    scores = reward(prompts=["What is 2 + 3?"] * 2, completions=["5", "9"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    assert reward.__name__ == "reward_model"  # trl logs rewards/reward_model/mean


def test_a_policy_is_not_a_reward_model(tmp_path):
    """A causal LM folder (no one-score head) is refused with a message naming the field."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from studio.methods.reward_model import load_reward_model

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "policy")
    with pytest.raises(ValueError, match="method.reward"):
        load_reward_model(f"model:{tmp_path / 'policy'}")
    with pytest.raises(ValueError, match="method.reward"):
        load_reward_model("model:")


@pytest.mark.slow
def test_grpo_trains_against_the_reward_run(reward_run, sft_policy, train_run):
    """method.reward = model:<reward run dir>: GRPO scores its samples with the trained
    head and logs the reward under the model's name."""
    spec = spec_from(
        name="grpo-rm", model={"source": "pretrained", "name_or_path": str(sft_policy), "max_seq_len": 128},
        data={"sources": [{"path": "assets/data/arith_prompts_train.jsonl"}], "eval_fraction": 0.0},
        method={"name": "grpo", "reward": f"model:{reward_run}", "group_size": 4, "beta": 0.04,
                "max_new_tokens": 4},
        train={"max_steps": 2, "batch_size": 8, "learning_rate": 1e-4, "warmup_steps": 0, "log_every": 1,
               "seed": 0},
    )
    run_dir = train_run(spec)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scores = [r["rewards/reward_model/mean"] for r in records if r.get("rewards/reward_model/mean") is not None]
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    assert (run_dir / "final" / "model.safetensors").is_file()


# -- the held-out target (`make test-truth`: ~6 min with its policy) ---------------
# The whole shipped training file at batch 64, scored on the 224 held-out pairs (prompts
# worded differently). The head must judge sums it never saw, so the backbone must know
# them: from the CI policy (150-step base, 0.95 held-out exact match) the head stalls at
# 0.85-0.89 (lr 3e-4..1e-3, 300-900 steps); from the well-read base's policy it reaches
# 0.906 (measured).
@pytest.fixture(scope="module")
def well_read_policy(well_read_base, session_runs) -> Path:
    from tests.conftest import sft_on_the_task

    return sft_on_the_task(well_read_base, session_runs, "well-read-policy", steps=400, batch_size=64, lr=3e-3)


@pytest.mark.truth
def test_held_out_pairwise_accuracy_reaches_ninety_percent(well_read_policy, train_run):
    from studio.methods.reward_model import load_reward_model

    spec = spec_from(
        name="reward", model={"source": "pretrained", "name_or_path": str(well_read_policy), "max_seq_len": 128},
        data={"sources": [{"path": PREFS_TRAIN}], "eval_fraction": 0.0},
        method={"name": "reward"},
        train={"max_steps": 600, "batch_size": 64, "learning_rate": 5e-4, "warmup_steps": 5,
               "scheduler": "cosine", "log_every": 10, "seed": 0},
    )
    reward = load_reward_model(f"model:{train_run(spec)}")
    accuracy = pairwise_accuracy(reward, read_rows("assets/data/arith_prefs_test.jsonl"))
    print(f"reward model: held-out pairwise accuracy {accuracy:.3f}")
    assert accuracy >= 0.9, accuracy
