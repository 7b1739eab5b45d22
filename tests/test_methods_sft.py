"""SFT in every parameter regime on the shipped arithmetic chat task.

Full SFT and LoRA must turn a base that has only read prose into one that answers most
held-out sums; the other adapters must lower the held-out loss; freeze-tuning must not
touch its frozen blocks; every adapter must save and load back exactly, and a merged
export must equal the adapter on its base."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from studio.metrics import read_all
from tests import sft_eval
from tests.conftest import spec_from

HELD_OUT = 64  # held-out items scored per test: enough for "a clear majority" to mean something


def sft_spec(base_run, regime: str, steps: int, lr: float, **method):
    return spec_from(
        name=f"sft-{regime}",
        # a run directory (not its final/) as the base: the chain pretrain -> SFT
        model={"source": "pretrained", "name_or_path": str(base_run), "max_seq_len": 128},
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0},
        method={"name": "sft", "regime": regime, **method},
        train={"max_steps": steps, "batch_size": 16, "learning_rate": lr, "warmup_steps": 5, "log_every": 5,
               "seed": 0},
    )


@pytest.fixture(scope="module")
def base_scores(base_model):
    model, tok = sft_eval.load(base_model)
    items = sft_eval.test_items(HELD_OUT)
    return {"accuracy": sft_eval.accuracy(model, tok, items), "loss": sft_eval.heldout_loss(model, tok, items)}


def test_base_cannot_do_the_task_yet(base_scores):
    assert base_scores["accuracy"] <= 0.1


@pytest.mark.slow
def test_full_sft_answers_most_held_out_sums(trained_policy, base_scores):
    model, tok = sft_eval.load(trained_policy)
    acc = sft_eval.accuracy(model, tok, sft_eval.test_items(HELD_OUT))
    assert acc >= 0.6, acc
    assert acc - base_scores["accuracy"] >= 0.5


@pytest.mark.truth  # ~2 min of LoRA plus ~3 min for its base: `make test-truth`
def test_lora_sft_answers_most_held_out_sums(well_read_base, train_run):
    # measured: 0.90 of all 224 held-out items (LoRA r32 needs batch 64, and a base that
    # has read the corpus long enough; lr 5e-3 diverges)
    model, tok = sft_eval.load(well_read_base)
    items = sft_eval.test_items(HELD_OUT)
    assert sft_eval.accuracy(model, tok, items) <= 0.1
    spec = sft_spec(well_read_base.parent, "lora", steps=400, lr=3e-3, lora_r=32, lora_alpha=64,
                    target_modules="all-linear")
    spec.train.batch_size = 64
    run = train_run(spec)
    assert (run / "final" / "adapter_config.json").is_file()
    assert not (run / "final" / "model.safetensors").exists()  # an adapter, not a copy of the base
    model, tok = sft_eval.load(run / "final")
    acc = sft_eval.accuracy(model, tok, items)
    assert acc >= 0.6, acc
    losses = [r["loss"] for r in read_all(run) if r.get("kind") != "eval" and r.get("loss") is not None]
    assert losses[-1] < losses[0]


@pytest.mark.slow
# 30 steps each. Margins measured on a d64 stand-in base: IA3 -0.4, prefix -0.66, prompt
# -0.15 nats; prompt tuning moves the loss least, so its bar is lower.
@pytest.mark.parametrize("regime, lr, method, margin", [
    ("lora", 3e-3, {"lora_r": 16, "lora_alpha": 32, "target_modules": "all-linear"}, 0.2),
    ("qlora", 3e-3, {"quant_type": "nf4", "double_quant": True}, 0.2),
    ("dora", 3e-3, {}, 0.2),
    ("prefix", 1e-1, {"num_virtual_tokens": 8}, 0.2),
    ("prompt", 3e-1, {"num_virtual_tokens": 16}, 0.08),
    ("ia3", 3e-2, {}, 0.2),
])
def test_adapter_regimes_lower_the_held_out_loss(base_model, base_scores, train_run, regime, lr, method, margin):
    run = train_run(sft_spec(base_model.parent, regime, steps=30, lr=lr, **method))
    model, tok = sft_eval.load(run / "final", regime)
    after = sft_eval.heldout_loss(model, tok, sft_eval.test_items(HELD_OUT))
    assert after < base_scores["loss"] - margin, (regime, base_scores["loss"], after)


def test_freeze_tuning_leaves_frozen_blocks_bit_identical(base_model, train_run):
    run = train_run(sft_spec(base_model.parent, "freeze", steps=10, lr=3e-3, freeze_trainable_layers=1))
    before = load_file(base_model / "model.safetensors")
    after = load_file(run / "final" / "model.safetensors")
    assert before.keys() == after.keys()
    n_layers = 1 + max(int(k.split(".")[2]) for k in before if k.startswith("model.layers."))
    last = f"model.layers.{n_layers - 1}."
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(last) for k in changed), sorted(changed)[:5]
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(last))


# -- save / load / merge, checked directly on a tiny base ------------------------------


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained("assets/tokenizer")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-base")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _adapted(base_dir, regime):
    """The base with the regime applied and its adapter weights moved off their
    initialisation (LoRA's B starts at zero, which would make every check trivial)."""
    from studio.model import apply_regime, build_or_load, load_tokenizer
    from studio.spec import MethodSpec, ModelSpec

    mspec = ModelSpec(source="pretrained", name_or_path=str(base_dir))
    method = MethodSpec(name="sft", regime=regime, lora_r=4, lora_alpha=8, lora_dropout=0.0, num_virtual_tokens=4)
    tok = load_tokenizer(mspec)
    model = apply_regime(build_or_load(mspec, tok, method), method, mspec)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.05)
    model.eval()
    return model, tok


def _logits(model, tok):
    batch = tok(["The sum of 2 and 3 is 5.", "Seven minus two is"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.mark.parametrize("regime", ["lora", "dora", "qlora", "prefix", "prompt", "ia3"])
def test_adapter_saves_and_loads_back_with_the_same_logits(tiny_base, tmp_path, regime):
    model, tok = _adapted(tiny_base, regime)
    expected = _logits(model, tok)
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    loaded, _ = sft_eval.load(tmp_path / "adapter", regime)
    assert torch.allclose(_logits(loaded, tok), expected, atol=1e-5)
    plain = _logits(sft_eval.load(tiny_base)[0], tok)
    # prompt tuning also returns logits for its virtual tokens, in front of the text's
    assert not torch.allclose(expected[:, -plain.shape[1]:], plain, atol=1e-3)


@pytest.mark.parametrize("regime", ["lora", "dora", "ia3"])
def test_merged_export_equals_adapter_on_base(tiny_base, tmp_path, regime):
    model, tok = _adapted(tiny_base, regime)
    expected = _logits(model, tok)
    model.merge_and_unload().save_pretrained(tmp_path / "merged", safe_serialization=True)
    tok.save_pretrained(tmp_path / "merged")
    merged, _ = sft_eval.load(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert torch.allclose(_logits(merged, tok), expected, atol=1e-4)
