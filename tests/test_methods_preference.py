"""DPO, ORPO, SimPO and KTO on the shipped arithmetic preferences: the policy comes to
prefer the chosen answers (summed completion log-probs) of the pairs it trained on, the
chosen-vs-rejected margin grows, and each method's metric keys reach metrics.jsonl.

The pairs are a small slice of the shipped training file, seen for several epochs, so
each method moves the policy clearly within the CPU budget. (Held-out pairs need the
policy to know the sums; the session's tiny SFT'd policy answers ~11% of held-out
prompts, and a few dozen preference steps do not teach it arithmetic.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import spec_from

PREFS_TRAIN = "assets/data/arith_prefs_train.jsonl"
PREFS_TEST = "assets/data/arith_prefs_test.jsonl"
KTO_TRAIN = "assets/data/arith_kto_train.jsonl"  # the same pairs, split into labelled singles
N_PAIRS = 32

# per method: (method fields, learning rate, steps). Reference-free ORPO/SimPO and the
# unpaired KTO signal need different step sizes from DPO to move the same distance.
RECIPES = {
    "dpo": ({"beta": 0.1}, 1e-3, 32),
    "orpo": ({"beta": 0.5}, 3e-3, 32),
    "simpo": ({"beta": 2.0, "simpo_gamma": 0.5}, 2e-3, 32),
    "kto": ({"beta": 0.1}, 1e-3, 32),
}
KEYS = {
    "dpo": ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
    "orpo": ("rewards/chosen", "rewards/margins", "rewards/accuracies", "nll_loss"),
    "simpo": ("rewards/chosen", "rewards/margins", "rewards/accuracies"),
    "kto": ("rewards/chosen", "rewards/rejected", "kl"),
}


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_policy(folder):
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(source="pretrained", name_or_path=str(folder))
    tokenizer = load_tokenizer(spec)
    return build_or_load(spec, tokenizer).eval(), tokenizer


def completion_logps(model, tokenizer, prompts: list[str], answers: list[str]) -> list[float]:
    """Summed log-prob of each answer after its chat-formatted prompt (one batch)."""
    import torch

    seqs, starts = [], []
    for prompt, answer in zip(prompts, answers):
        msgs = [{"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
        full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=True,
                                             return_dict=True)
        seqs.append(list(full["input_ids"]))
        starts.append(len(head["input_ids"]))
    width, pad = max(map(len, seqs)), tokenizer.pad_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    token_logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return [float(token_logps[i, start - 1:len(s) - 1].sum()) for i, (s, start) in enumerate(zip(seqs, starts))]


def preference_stats(folder, rows: list[dict]) -> tuple[float, float]:
    """(share of pairs where the policy prefers chosen, mean logp(chosen) - logp(rejected))."""
    model, tokenizer = load_policy(folder)
    prompts = [r["prompt"] for r in rows]
    chosen = completion_logps(model, tokenizer, prompts, [r["chosen"] for r in rows])
    rejected = completion_logps(model, tokenizer, prompts, [r["rejected"] for r in rows])
    margins = [c - r for c, r in zip(chosen, rejected)]
    return sum(m > 0 for m in margins) / len(rows), sum(margins) / len(rows)


def preference_spec(policy, name: str, pairs_file, regime: str = "full", steps: int | None = None):
    method, lr, default_steps = RECIPES[name]
    return spec_from(
        name=name, model={"source": "pretrained", "name_or_path": str(policy), "max_seq_len": 128},
        data={"sources": [{"path": str(pairs_file)}], "eval_fraction": 0.0},
        method={"name": name, "regime": regime, **method},
        train={"max_steps": steps or default_steps, "batch_size": 16, "learning_rate": lr, "warmup_steps": 2,
               "scheduler": "cosine", "log_every": 2, "seed": 0},
    )


@pytest.fixture(scope="module")
def pairs():
    return read_rows(PREFS_TRAIN)[:N_PAIRS]


@pytest.fixture(scope="module")
def pairs_file(pairs, tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    return path


@pytest.fixture(scope="module")
def before(sft_policy, pairs):
    return preference_stats(sft_policy, pairs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RECIPES))
def test_policy_comes_to_prefer_the_chosen_answers(name, sft_policy, pairs, pairs_file, before, train_run):
    run_dir = train_run(preference_spec(sft_policy, name, pairs_file))
    acc_before, margin_before = before
    acc_after, margin_after = preference_stats(run_dir / "final", pairs)
    print(f"{name}: preference accuracy {acc_before:.3f} -> {acc_after:.3f}, "
          f"margin {margin_before:.2f} -> {margin_after:.2f}")
    # Measured here from (0.50, -0.11): dpo 0.78/7.3, simpo 0.75/3.8, kto 0.72/1.0,
    # orpo 0.69/0.67; on one torch thread the SFT policy starts at 0.66 and dpo/kto/orpo
    # reach 0.72-0.75. Summed log-probs favour the shorter answer ("8" over "10"), which
    # holds the last pairs back (`make test-truth` holds the 0.9 target, from a longer SFT).
    # Two more of the 32 pairs at least, and the margin, say the preference moved.
    assert acc_after >= 0.625 and acc_after >= acc_before + 2 / len(pairs), (acc_before, acc_after)
    assert margin_after > margin_before + 0.5, (margin_before, margin_after)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*(r.keys() for r in records if r.get("kind") == "train"))
    assert set(KEYS[name]) <= logged, sorted(logged)


@pytest.mark.slow
def test_dpo_with_lora_trains_the_adapter_against_the_frozen_base(sft_policy, pairs, pairs_file, before,
                                                                  train_run):
    run_dir = train_run(preference_spec(sft_policy, "dpo", pairs_file, regime="lora", steps=16))
    final = run_dir / "final"
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    assert not (final / "ref").exists()  # trl's frozen reference copy is not part of the result
    _, margin_after = preference_stats(final, pairs)
    assert margin_after > before[1] + 0.2  # measured: -0.11 -> 0.23 after 8 steps


def test_dpo_loss_types_are_lists_and_bad_names_name_the_field():
    from studio.methods.preference import dpo_loss_types, kto_loss_type, simpo_nll_weight

    assert dpo_loss_types("sigmoid") == ["sigmoid"]
    assert dpo_loss_types("sigmoid, sft") == ["sigmoid", "sft"]
    assert dpo_loss_types("") == ["sigmoid"]
    with pytest.raises(ValueError, match="method.loss_type"):
        dpo_loss_types("sigmoid,nonsense")
    assert kto_loss_type("sigmoid") == "kto"  # the spec's DPO default means KTO's own loss
    assert kto_loss_type("apo_zero_unpaired") == "apo_zero_unpaired"
    # SimPO: plain (the paper's cpo_alpha=0), or with the chosen answers' NLL
    assert simpo_nll_weight("sigmoid") == simpo_nll_weight("simpo") == 0.0
    assert simpo_nll_weight("simpo, sft") == 1.0
    with pytest.raises(ValueError, match="method.loss_type"):
        simpo_nll_weight("hinge")



@pytest.mark.slow
def test_kto_weighs_thumbs_up_rows_by_desirable_weight(sft_policy, pairs_file, train_run):
    # At the first step the policy is its own reference, so every row's KTO loss is
    # 1 - sigmoid(0) = 0.5 and the batch loss is 0.5 x the mean row weight: above 0.5
    # exactly when the thumbs-up rows weigh more (measured 0.5 with the default weights).
    spec = preference_spec(sft_policy, "kto", pairs_file, steps=1)
    spec.method.desirable_weight, spec.method.undesirable_weight = 3.0, 1.0
    run_dir = train_run(spec)
    first = next(json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line).get("kind") == "train" and "loss" in json.loads(line))
    assert 0.6 < first["loss"] < 1.5, first  # 0.5 x (3 n_up + n_down) / n, both kinds in a batch of 16

# -- the held-out target (`make test-truth`: ~2 min a method) ---------------------
# The whole shipped training file at batch 64, scored on the 224 held-out pairs, whose
# prompts are worded differently. The starting policy prefers the right answer of 64% of
# them (it answers ~15% of held-out sums): each method has to teach it the sums.
# DPO runs with trl's "sigmoid, sft" loss (DPO plus the chosen answers' NLL, the RPO
# variant): pure DPO reaches 0.85 in 400 steps here and collapses at higher rates, as
# Pang et al. (2024) found for DPO on reasoning tasks without the NLL term.
HELD_OUT_RECIPES = {
    "dpo": ({"beta": 0.1, "loss_type": "sigmoid, sft"}, 1e-3, 300),  # measured 0.98
    "orpo": ({"beta": 0.1}, 2e-3, 400),  # measured 0.92
    # with the chosen answers' NLL (cpo_alpha=1): measured 0.99. Plain SimPO peaks near
    # 0.835 at 300 steps and falls back (0.665 at 600) as it lowers both answers.
    "simpo": ({"beta": 2.0, "simpo_gamma": 0.5, "loss_type": "simpo, sft"}, 1e-3, 400),
    # thumbs-up rows weighted 2: measured 0.612 -> 0.969 from this fixture's policy (weight
    # 1.5: 0.938; 1.33, the KTO paper's bound for balanced data: 0.879, though 0.960 from a
    # 0.643 policy; equal weights: 0.879 from 0.643). KTO drags both answers down at higher
    # rates and small beta (lr 3e-4: 0.585; beta 0.1, lr 1e-3: 0.61 in 300 steps).
    "kto": ({"beta": 1.0, "desirable_weight": 2.0}, 2e-4, 1200),
}


@pytest.fixture(scope="module")
def held_out_before(sft_policy):
    return preference_stats(sft_policy, read_rows(PREFS_TEST))


@pytest.mark.truth
@pytest.mark.parametrize("name", list(HELD_OUT_RECIPES))
def test_held_out_preference_accuracy_reaches_ninety_percent(name, sft_policy, held_out_before, train_run):
    method, lr, steps = HELD_OUT_RECIPES[name]
    spec = spec_from(
        name=name, model={"source": "pretrained", "name_or_path": str(sft_policy), "max_seq_len": 128},
        data={"sources": [{"path": KTO_TRAIN if name == "kto" else PREFS_TRAIN}], "eval_fraction": 0.0},
        method={"name": name, "regime": "full", **method},
        train={"max_steps": steps, "batch_size": 64, "learning_rate": lr, "warmup_steps": 5,
               "scheduler": "cosine", "log_every": 10, "seed": 0},
    )
    run_dir = train_run(spec)
    acc_before, margin_before = held_out_before
    acc_after, margin_after = preference_stats(run_dir / "final", read_rows(PREFS_TEST))
    print(f"{name}: held-out preference accuracy {acc_before:.3f} -> {acc_after:.3f}, "
          f"margin {margin_before:.2f} -> {margin_after:.2f}")
    assert acc_before <= 0.7  # near chance: the policy does not know the sums yet
    assert acc_after >= 0.9, (acc_before, acc_after)
    assert margin_after > margin_before + 1.0, (margin_before, margin_after)
