"""The PPO loop trains: a tiny Llama learns to say a target word, the KL to its reference
stays reported and bounded, runs repeat exactly, and the worker's PPO method writes its
metrics and final/ (full weights and a LoRA adapter)."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch

from studio.methods.ppo_core import PolicyWithValue, PPOConfig, PPOTrainer, mean_reward, train_ppo

pytestmark = pytest.mark.slow

WORDS = "a b c d e f g h i j".split()
TARGET = "a"
NEW_TOKENS = 6


def word_tokenizer():
    """Word-level tokenizer over WORDS; pad 0, eos 1."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_llama(vocab_size: int, pad_id: int, eos_id: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def target_fraction(completions, answer=None, **kw):
    """Share of the NEW_TOKENS completion slots holding TARGET (stopping early scores less)."""
    return [c.split().count(TARGET) / NEW_TOKENS for c in completions]


def word_prompts():
    rng = random.Random(0)
    prompts = [" ".join(rng.choice(WORDS[1:]) for _ in range(rng.randint(2, 4))) for _ in range(200)]
    return prompts[:150], prompts[150:]


def config(**overrides) -> PPOConfig:
    base = dict(batch_size=32, mini_batch_size=16, ppo_epochs=4, max_steps=25, learning_rate=3e-3, kl_coef=0.02,
                vf_coef=0.1, max_new_tokens=NEW_TOKENS, seed=0, log_every=5)
    return PPOConfig(**{**base, **overrides})


def held_out_reward(policy, tokenizer, prompts) -> float:
    torch.manual_seed(123)  # the same sampling noise before and after
    return mean_reward(policy, tokenizer, prompts, None, target_fraction, config())


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)  # bit-for-bit repeatable and kind to the shared cores
    tokenizer = word_tokenizer()
    train, held = word_prompts()
    policy = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    before = held_out_reward(policy, tokenizer, held)
    records: list[dict] = []
    trainer = train_ppo(policy, tokenizer, train, None, target_fraction, config(), log=records.append)
    after = held_out_reward(trainer.policy, tokenizer, held)
    return dict(before=before, after=after, records=records, tokenizer=tokenizer, trainer=trainer)


def test_ppo_raises_held_out_reward(trained):
    before, after = trained["before"], trained["after"]
    # a random policy says the target about 1 word in 13; after PPO nearly always
    assert before < 0.2
    assert after >= 2 * before and after >= 0.8, (before, after)


def test_kl_to_reference_is_reported_and_bounded(trained):
    records = trained["records"]
    assert [r["step"] for r in records] == [1, 5, 10, 15, 20, 25]
    keys = {"step", "reward", "reward_std", "kl", "entropy", "policy_loss", "value_loss", "clip_fraction",
            "approx_kl", "loss", "learning_rate", "grad_norm", "tokens_per_second", "completions/mean_length"}
    assert all(keys <= set(r) and all(math.isfinite(r[k]) for k in keys) for r in records)
    kls = [r["kl"] for r in records]
    assert abs(kls[0]) < 1e-4  # the first rollout comes from the reference itself
    assert kls[-1] > kls[1] > 0.1  # drifting away as the reward rises...
    # ...but bounded: per token no more than the log-odds of the whole vocabulary
    assert kls[-1] < NEW_TOKENS * math.log(len(trained["tokenizer"])) * 2
    assert records[-1]["reward"] > records[0]["reward"]
    assert records[-1]["entropy"] < records[0]["entropy"]  # the policy became decisive


def test_a_larger_kl_coef_keeps_the_policy_closer(trained):
    tokenizer = trained["tokenizer"]
    train, _ = word_prompts()
    policy = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    records: list[dict] = []
    train_ppo(policy, tokenizer, train, None, target_fraction, config(max_steps=10, kl_coef=1.0), log=records.append)
    loose = next(r for r in trained["records"] if r["step"] == 10)
    assert records[-1]["step"] == 10
    assert records[-1]["kl"] < 0.5 * loose["kl"], (records[-1]["kl"], loose["kl"])


def test_runs_repeat_exactly():
    torch.set_num_threads(1)
    tokenizer = word_tokenizer()
    train, _ = word_prompts()
    runs = []
    for _ in range(2):
        policy = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
        trainer = PPOTrainer(policy, tokenizer, target_fraction, config(max_steps=2))
        metrics = [trainer.step(train[i * 32:(i + 1) * 32]) for i in range(2)]
        runs.append([{k: v for k, v in m.items() if k != "tokens_per_second"} for m in metrics])
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[0][1]


def test_value_head_shares_the_trunk_and_respects_left_padding():
    policy = tiny_llama(20, 0, 1)
    model = PolicyWithValue(policy)
    ids = torch.tensor([[0, 3, 4, 5], [6, 7, 8, 9]])
    att = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    logits, values = model(ids, att)
    assert logits.shape == (2, 4, 20) and values.shape == (2, 4)
    values[:, -1].sum().backward()
    assert model.value_head.summary.weight.grad.abs().sum() > 0
    assert policy.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0  # the value loss trains the trunk too
    with torch.no_grad():  # the padded row scores its tokens as the unpadded prompt would
        alone, alone_values = model(ids[:1, 1:], att[:1, 1:])
    assert torch.allclose(alone[0], logits[0, 1:], atol=1e-5)
    assert torch.allclose(alone_values[0], values[0, 1:].detach(), atol=1e-5)


def test_rollout_logprobs_are_those_generate_sampled_from():
    """The ratio's denominator must be the distribution the tokens were drawn from: the
    scoring forward (left padding, temperature) has to reproduce generate's logits."""
    from studio.methods.ppo_core import generate

    tokenizer = word_tokenizer()
    train, _ = word_prompts()
    policy = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id).eval()
    trainer = PPOTrainer(policy, tokenizer, target_fraction, config(temperature=0.7))
    torch.manual_seed(3)
    ro = trainer.rollout(train[:8], None)
    assert ro.attention_mask[:, :ro.prompt_len].eq(0).any()  # some prompts really are left-padded
    torch.manual_seed(3)  # the same samples again, now with generate's own logits
    texts = tokenizer(train[:8], return_tensors="pt", padding=True, padding_side="left")
    out = policy.generate(**texts, do_sample=True, temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=NEW_TOKENS,
                          eos_token_id=[tokenizer.eos_token_id], pad_token_id=tokenizer.pad_token_id,
                          output_logits=True, return_dict_in_generate=True)
    assert torch.equal(out.sequences, ro.sequences)
    sampled = torch.stack(out.logits, 1).div(0.7).log_softmax(-1)
    sampled = sampled.gather(2, out.sequences[:, ro.prompt_len:, None]).squeeze(-1)
    assert torch.allclose(sampled * ro.mask, ro.logprobs * ro.mask, atol=1e-5)
    assert torch.allclose(ro.ref_logprobs, ro.logprobs, atol=1e-6)  # before any update, policy == reference


# -- the method entry, through the worker's own code path (assets/ tokenizer and data) ---


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    from studio.model import load_tokenizer
    from studio.spec import ModelSpec

    tokenizer = load_tokenizer(ModelSpec())
    folder = tmp_path_factory.mktemp("ppo_policy")
    model = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("regime", ["full", "lora"])
def test_ppo_method_writes_metrics_and_final(policy_dir, train_run, regime):
    from safetensors.torch import load_file

    from tests.conftest import spec_from

    spec = spec_from(
        name=f"ppo-{regime}",
        model={"source": "pretrained", "name_or_path": str(policy_dir)},
        data={"sources": [{"path": "assets/data/arith_prompts_train.jsonl"}], "eval_fraction": 0.1, "max_rows": 200},
        method={"name": "ppo", "regime": regime, "reward": "exact_match", "max_new_tokens": 4, "ppo_epochs": 2,
                "mini_batch_size": 4, "lora_r": 4, "lora_alpha": 8},
        train={"max_steps": 2, "batch_size": 8, "learning_rate": 1e-3, "log_every": 1, "eval_every": 2,
               "eval_steps": 1, "warmup_steps": 0},
    )
    run_dir = train_run(spec)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["kl"] is not None and r["completions/mean_length"] >= 1 for r in train)
    # the reference is the starting policy (a frozen copy, or the base with the adapter off)
    assert abs(train[0]["kl"]) < 1e-4 and abs(train[0]["approx_kl"]) < 0.5
    assert any(r["kind"] == "eval" and 0.0 <= r["eval_reward"] <= 1.0 for r in records)
    final = run_dir / "final"
    weights = "adapter_model.safetensors" if regime == "lora" else "model.safetensors"
    assert (final / weights).is_file() and (final / "tokenizer.json").is_file()
    head = load_file(str(final / "value_head.safetensors"))
    assert head["summary.weight"].shape == (1, 32)
    if regime == "lora":  # the base stays untouched: only the adapter is saved
        assert not (final / "model.safetensors").exists()


def test_reward_model_scores_prompt_plus_completion(tmp_path, policy_dir):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from studio.methods.reward_model import load_reward_model

    cfg = LlamaConfig.from_pretrained(policy_dir)
    cfg.num_labels = 1
    torch.manual_seed(0)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm", safe_serialization=True)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(tmp_path / "rm")
    scorer = load_reward_model(f"model:{tmp_path / 'rm'}")
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Add 1 and 1."}]]
    completions = ["4", "the answer is two"]
    together = scorer(completions=completions, prompts=prompts)  # the call PPO makes
    alone = [scorer(completions=[c], prompts=[p])[0] for c, p in zip(completions, prompts)]
    assert together == pytest.approx(alone, abs=1e-5)  # right padding does not move the scored token
    assert together[0] != pytest.approx(together[1])
    with pytest.raises(ValueError, match="method.reward"):
        load_reward_model(f"model:{tmp_path / 'missing'}")


def test_several_rewards_are_summed_per_completion(tmp_path):
    from studio.methods.context import TrainContext
    from studio.methods.ppo import make_reward
    from tests.conftest import spec_from

    spec = spec_from(name="ppo", method={"name": "ppo", "reward": "exact_match, closeness"})
    reward = make_reward(TrainContext(spec=spec, run_dir=tmp_path))
    scores = reward(completions=["12", "11", "x"], answer=["12", "12", "12"], prompts=["p"] * 3)
    assert scores == pytest.approx([2.0, 0.5, 0.0])


def test_a_failed_value_head_write_leaves_no_half_final(tmp_path, monkeypatch):
    """final/ is written whole or not at all (#17): the value head goes into final/'s
    temporary folder before the rename, so a write that fails (a full disk) leaves the
    earlier final/ as it was, value head included, and no final/ without one."""
    from types import SimpleNamespace

    import safetensors.torch
    from safetensors.torch import load_file

    from studio.methods import ppo
    from studio.methods.context import TrainContext
    from studio.presets import default_spec

    tokenizer = word_tokenizer()
    policy = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    trainer = SimpleNamespace(policy=policy, model=PolicyWithValue(policy))
    ctx = TrainContext(spec=default_spec(), run_dir=tmp_path)
    final = ppo.save_policy(ctx, trainer, tokenizer)
    kept = load_file(str(final / ppo.VALUE_HEAD_FILE))["summary.weight"].clone()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with torch.no_grad():
        trainer.model.value_head.summary.weight.add_(1.0)  # a later save that would differ
    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ppo.save_policy(ctx, trainer, tokenizer)
    assert torch.equal(load_file(str(final / ppo.VALUE_HEAD_FILE))["summary.weight"], kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temporary folder left
    monkeypatch.undo()
    (tmp_path / "other").mkdir()
    with pytest.raises(OSError):  # a first save that fails: no final/ at all
        monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
        ppo.save_policy(TrainContext(spec=default_spec(), run_dir=tmp_path / "other"), trainer, tokenizer)
    assert list((tmp_path / "other").iterdir()) == []
