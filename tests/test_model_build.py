"""Every architecture option builds, trains a step, generates the same with and without
the KV cache, saves and reloads through the Auto classes, and is counted exactly."""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch

from studio.estimate import architecture_of, count_parameters
from studio.spec import ModelSpec, RunSpec, validate_model

TINY = dict(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, n_layers=2, max_seq_len=64)

SINGLE_OPTIONS = {
    "default": {},
    "sinusoidal": dict(positional_encoding="sinusoidal"),
    "alibi": dict(positional_encoding="alibi"),
    "yarn": dict(positional_encoding="yarn", yarn_factor=2.0),
    "mha": dict(attention="mha", n_kv_heads=4),
    "mqa": dict(attention="mqa", n_kv_heads=1),
    "layernorm": dict(norm="layernorm"),
    "relu": dict(activation="relu"),
    "gelu": dict(activation="gelu"),
    "silu": dict(activation="silu"),
    "leaky_relu": dict(activation="leaky_relu"),
    "dropout": dict(dropout=0.1),
    "sliding_window": dict(sliding_window=5),
    "attention_bias": dict(attention_bias=True),
    "norm_eps": dict(norm_eps=1e-5),
    "untied": dict(tie_embeddings=False),
    "rope_theta": dict(rope_theta=500000.0),
}


def _grid(n: int) -> dict:
    """A fixed sample of the full option grid (4 x 3 x 2 x 5 x 2 x 2 x 2 combinations)."""
    axes = [
        [dict(positional_encoding=p) for p in ("sinusoidal", "rope", "alibi", "yarn")],
        [dict(attention="mha", n_kv_heads=4), dict(attention="mqa", n_kv_heads=1), dict(attention="gqa", n_kv_heads=2)],
        [dict(norm=n) for n in ("layernorm", "rmsnorm")],
        [dict(activation=a) for a in ("relu", "gelu", "silu", "leaky_relu", "swiglu")],
        [dict(sliding_window=None), dict(sliding_window=6)],
        [dict(attention_bias=False), dict(attention_bias=True)],
        [dict(tie_embeddings=True), dict(tie_embeddings=False)],
    ]
    combos = list(itertools.product(*axes))
    picked = random.Random(1234).sample(combos, n)
    out = {}
    for combo in picked:
        kw = {}
        for part in combo:
            kw.update(part)
        if kw["positional_encoding"] == "yarn":
            kw["yarn_factor"] = 2.0
        out["-".join(str(v) for v in kw.values())] = kw
    return out


CASES = {**SINGLE_OPTIONS, **_grid(16)}


def tiny_spec(**overrides) -> ModelSpec:
    return ModelSpec(**{**TINY, **overrides})


def _train_step(model, ids) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
    assert changed == len(before), "every parameter should move after one AdamW step"
    model.eval()
    return loss.item()


@pytest.mark.parametrize("name", list(CASES))
def test_option_builds_trains_generates_reloads(name, tmp_path):
    import studio.model as sm
    from transformers import AutoModelForCausalLM

    spec = tiny_spec(**CASES[name])
    assert validate_model(spec) == []
    torch.manual_seed(0)
    model = sm.build_model(spec)
    arch = architecture_of(spec)
    assert model.config.model_type == arch

    # the estimate is the real count, to the parameter
    assert count_parameters(spec)["total"] == sum(p.numel() for p in model.parameters())

    ids = torch.randint(2, 64, (2, 10))
    _train_step(model, ids)

    # greedy generation: the KV cache changes nothing, left padding changes nothing
    prompt = ids[:, :6].clone()
    mask = torch.ones_like(prompt)
    prompt[0, :2], mask[0, :2] = 0, 0
    kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = model.generate(prompt, use_cache=True, **kw)
    uncached = model.generate(prompt, use_cache=False, **kw)
    assert torch.equal(cached, uncached)
    alone = model.generate(prompt[:1, 2:], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(alone[0], cached[0, 2:])

    model.save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(reloaded) is type(model)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-6)


def test_architecture_rule_and_config_fields():
    import studio.model as sm

    assert architecture_of(tiny_spec()) == "llama"
    assert architecture_of(tiny_spec(sliding_window=8)) == "mistral"
    assert architecture_of(tiny_spec(sliding_window=8, attention_bias=True)) == "studio"
    for other in ("sinusoidal", "alibi", "layernorm", "gelu", "relu"):
        assert architecture_of(tiny_spec(**SINGLE_OPTIONS[other])) == "studio", other

    llama = sm.config_for(tiny_spec(attention_bias=True, tie_embeddings=False, positional_encoding="yarn",
                                    yarn_factor=4.0, rope_theta=20000.0, norm_eps=1e-5))
    assert llama.model_type == "llama" and llama.attention_bias and not llama.tie_word_embeddings
    assert llama.rope_parameters["rope_type"] == "yarn" and llama.rope_parameters["factor"] == 4.0
    assert llama.rope_parameters["original_max_position_embeddings"] == 64
    assert llama.max_position_embeddings == 256 and llama.rope_parameters["rope_theta"] == 20000.0
    assert llama.rms_norm_eps == 1e-5
    mistral = sm.config_for(tiny_spec(sliding_window=8, attention="mqa", n_kv_heads=1))
    assert mistral.model_type == "mistral" and mistral.sliding_window == 8 and mistral.num_key_value_heads == 1
    studio_cfg = sm.config_for(tiny_spec(positional_encoding="alibi", activation="leaky_relu", norm="layernorm"))
    assert (studio_cfg.position_embedding, studio_cfg.hidden_act, studio_cfg.norm_type) == ("alibi", "leaky_relu", "layernorm")


def test_left_padding_gives_the_same_logits_for_each_position_kind():
    import studio.model as sm

    for kind in ("sinusoidal", "alibi", "rope"):
        spec = tiny_spec(positional_encoding=kind, norm="layernorm", sliding_window=4)
        torch.manual_seed(0)
        model = sm.build_model(spec).eval()
        seq = torch.randint(2, 64, (1, 7))
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], dim=1)
        mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 7, dtype=torch.long)], dim=1)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            plain = model(seq).logits
            shifted = model(padded, attention_mask=mask, position_ids=position_ids).logits[:, 3:]
        assert torch.allclose(plain, shifted, atol=1e-5), kind


def test_gradient_checkpointing_gives_the_same_gradients():
    import studio.model as sm

    spec = tiny_spec(positional_encoding="alibi", norm="layernorm", activation="gelu")
    ids = torch.randint(2, 64, (2, 12))
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = sm.build_model(spec).train()
        assert model.supports_gradient_checkpointing
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_impossible_combinations_are_refused_field_by_field():
    def fields(**kw):
        return {p.field for p in RunSpec(model=tiny_spec(**kw)).validate()}

    assert "model.d_model" in fields(d_model=30, n_heads=4)
    assert "model.n_kv_heads" in fields(n_heads=4, n_kv_heads=3)
    assert "model.n_kv_heads" in fields(attention="mqa", n_kv_heads=2)
    assert "model.n_kv_heads" in fields(attention="mha", n_kv_heads=2)
    assert "model.yarn_factor" in fields(positional_encoding="yarn", yarn_factor=None)
    assert "model.d_model" in fields(positional_encoding="rope", d_model=36, n_heads=4)  # odd head size
    assert "model.d_model" not in fields(positional_encoding="alibi", d_model=36, n_heads=4)
    assert "model.sliding_window" in fields(sliding_window=0)


# -- tokenizer and existing models ------------------------------------------------


def _bare_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer with no pad token and no chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "hello", "world", "a", "b", "c"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(folder)
    return folder


def test_load_tokenizer_sets_pad_and_chatml(tmp_path):
    import studio.model as sm

    folder = _bare_tokenizer(tmp_path / "tok")
    tok = sm.load_tokenizer(ModelSpec(tokenizer=str(folder)))
    assert tok.pad_token == "<eos>"
    assert "<|im_start|>" in tok.chat_template
    model = sm.build_or_load(ModelSpec(**{**TINY, "vocab_size": None, "tokenizer": str(folder)}), tok)
    assert model.config.vocab_size == len(tok) == 6
    assert model.config.pad_token_id == tok.pad_token_id


def test_pretrained_folder_run_dir_and_refusals(tmp_path):
    import studio.model as sm

    folder = _bare_tokenizer(tmp_path / "run" / "final")
    spec = ModelSpec(**{**TINY, "vocab_size": None, "tokenizer": str(folder)})
    tok = sm.load_tokenizer(spec)
    torch.manual_seed(0)
    model = sm.build_or_load(spec, tok)
    model.save_pretrained(folder)
    ids = torch.tensor([[1, 2, 3]])

    for where in (folder, tmp_path / "run"):  # the final/ folder, or the run directory holding it
        pre = ModelSpec(source="pretrained", name_or_path=str(where))
        assert sm.load_tokenizer(pre).get_vocab() == tok.get_vocab()
        loaded = sm.build_or_load(pre, None)
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, model(ids).logits)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(model.config.to_dict()))
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors"):
        sm.build_or_load(ModelSpec(source="pretrained", name_or_path=str(pickled)), None)
    with pytest.raises(ValueError, match="name_or_path"):
        sm.build_or_load(ModelSpec(source="pretrained", name_or_path=str(tmp_path / "missing")), None)


def test_presets_load_validate_and_have_their_size():
    import yaml

    from studio.estimate import PRESET_DIR

    expected = {"tiny": None, "llama-100m": (0.09e9, 0.11e9), "llama-500m": (0.45e9, 0.55e9),
                "llama-1b": (1_235_814_400, 1_235_814_400), "llama-8b": (8_030_261_248, 8_030_261_248),
                "mistral-7b": (7_241_732_096, 7_241_732_096)}
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    assert set(expected) <= set(names)
    for name in names:
        spec = ModelSpec(**yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())["model"])
        assert validate_model(spec) == [], name
        if expected.get(name):
            lo, hi = expected[name]
            assert lo <= count_parameters(spec)["total"] <= hi, name
    assert architecture_of(ModelSpec(**yaml.safe_load((PRESET_DIR / "mistral-7b.yaml").read_text())["model"])) == "mistral"


def test_studio_model_hidden_states_and_sequence_classification(tmp_path):
    import studio.model as sm
    from transformers import AutoModelForSequenceClassification

    spec = tiny_spec(positional_encoding="alibi", norm="layernorm", activation="gelu")
    torch.manual_seed(0)
    model = sm.build_model(spec).eval()
    ids = torch.randint(2, 64, (2, 7))
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == spec.n_layers + 1
    assert torch.allclose(model.lm_head(out.hidden_states[-1]), out.logits, atol=1e-6)

    model.save_pretrained(tmp_path)
    scorer = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=1, pad_token_id=0).eval()
    padded = torch.cat([ids, torch.zeros(2, 2, dtype=torch.long)], dim=1)  # right padding
    with torch.no_grad():
        scores = scorer(padded, attention_mask=(padded != 0).long()).logits
        trunk = scorer.model(ids).last_hidden_state[:, -1]
    assert scores.shape == (2, 1)
    assert torch.allclose(scores, scorer.score(trunk), atol=1e-5)
    assert torch.equal(scorer.model.embed_tokens.weight, model.model.embed_tokens.weight)
