"""The advisor at real sizes (#19): plans at the data's sequence length, steps from rows
and epochs, and every pick checked against the device by the estimate (configs only, no
weights: the estimate reads the config's shapes)."""
from __future__ import annotations

import json
import math

import pytest

from studio import advisor
from studio.advisor.fit import device_that_fits, fit_regime
from studio.advisor.lengths import data_seq_len, quantile_length
from studio.estimate import estimate_memory
from studio.spec import DataSource, MethodSpec, ModelSpec, RunSpec
from studio.units import GIB

LLAMA3_8B = dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                 max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                 rms_norm_eps=1e-5, hidden_act="silu")
SMOLLM2_135M = dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    max_position_embeddings=8192, tie_word_embeddings=True, rms_norm_eps=1e-5, hidden_act="silu")


def _model(tmp_path, name, config, max_seq_len=8192):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return ModelSpec(source="pretrained", name_or_path=str(folder), max_seq_len=max_seq_len)


def _chats(tmp_path, n):
    """n short conversations (~20 tokens each by the studio's tokenizer)."""
    path = tmp_path / "chats.jsonl"
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                              {"role": "assistant", "content": f"It is {2 * i}."}]}) + "\n")
    return path


def _advise(spec, gb, rows, seq_len, source="given"):
    answers = advisor.infer_answers(spec, "conversation", device_memory_gb=gb, data_rows=rows,
                                    seq_len=seq_len, seq_len_source=source)
    answers.goal = "instructions"
    return answers, advisor.advise(answers)


@pytest.fixture(scope="module")
def short_chats(tmp_path_factory):
    """The blend's real length (p95 of its token counts) and rows, measured from the file."""
    tmp = tmp_path_factory.mktemp("chats")
    spec = RunSpec(model=ModelSpec(max_seq_len=8192))
    spec.data.sources = [DataSource(path=str(_chats(tmp, 600)))]
    spec.data.eval_fraction = 0.0  # all 600 train (with the default 5% held out, 570 would)
    seq, rows, source = data_seq_len(spec, tokenizer="assets/tokenizer")
    return seq, rows, source


def test_sequence_length_comes_from_the_data(short_chats):
    seq, rows, source = short_chats
    assert rows == 600 and 10 <= seq <= 40, (seq, source)  # the chat template adds a few tokens
    assert "p95" in source
    assert quantile_length([5] * 95 + [3000] * 5, limit=512) == 512  # truncation caps it
    assert quantile_length(list(range(1, 101)), limit=None) == 96


def test_8b_on_16gb_with_600_short_chats_is_qlora_that_fits(tmp_path, short_chats):
    seq, rows, source = short_chats
    spec = RunSpec(model=_model(tmp_path, "Llama-3-8B", LLAMA3_8B))
    answers, advice = _advise(spec, 16, rows, seq, source)
    assert (advice.method, advice.regime) == ("sft", "qlora")
    r = advice.recipe
    assert 1 <= r["train.epochs"] <= 3
    effective = r["train.batch_size"] * r["train.grad_accum"]
    assert effective <= rows
    assert r["train.max_steps"] == math.ceil(rows * r["train.epochs"] / effective)
    assert r["train.max_steps"] * effective <= rows * r["train.epochs"] + effective  # no 533 epochs
    # the pick's peak by the estimate, at the data's length with the recipe's settings, under 16 GB
    fit = advice.fit
    assert fit["fits"] and fit["need"] < 16 * GIB * advisor.HEADROOM
    method = MethodSpec(regime="qlora", lora_r=r["method.lora_r"], lora_dropout=r["method.lora_dropout"])
    again = estimate_memory(LLAMA3_8B, method, None, seq_len=seq, batch_size=r["train.batch_size"], dtype="bf16",
                            optimizer=r["train.optimizer"],
                            gradient_checkpointing=r["train.gradient_checkpointing"] == "on")["total"]
    assert again == fit["need"] < 16 * GIB
    # at the model's whole 8k context the same would not be planned this way: the data's length matters
    assert estimate_memory(LLAMA3_8B, method, None, seq_len=8192, batch_size=r["train.batch_size"],
                           dtype="bf16")["total"] > 16 * GIB
    for field in ("train.learning_rate", "method.lora_r", "train.batch_size", "train.epochs", "train.max_steps"):
        assert advice.reasons.get(field), field
    assert "LIMA" in advice.reasons["train.epochs"] or "default" in advice.reasons["train.epochs"]


def test_8b_on_80gb_is_lora_or_full(tmp_path, short_chats):
    seq, rows, _ = short_chats
    spec = RunSpec(model=_model(tmp_path, "Llama-3-8B", LLAMA3_8B))
    _, advice = _advise(spec, 80, rows, seq)
    assert advice.regime in ("lora", "dora", "full")
    assert advice.fit["fits"] and advice.fit["need"] < 80 * GIB


def test_135m_on_24gb_is_full_sft(tmp_path, short_chats):
    seq, rows, _ = short_chats
    spec = RunSpec(model=_model(tmp_path, "SmolLM2-135M", SMOLLM2_135M))
    _, advice = _advise(spec, 24, rows, seq)
    assert (advice.method, advice.regime) == ("sft", "full")
    assert advice.fit["fits"] and not advice.fit["fallbacks"]
    assert advice.recipe["train.learning_rate"] == 1e-5  # the seed's size table stays the rate's source


def test_12_examples_on_an_8b_fits_or_names_the_device(tmp_path):
    spec = RunSpec(model=_model(tmp_path, "Llama-3-8B", LLAMA3_8B))
    _, advice = _advise(spec, 16, 12, 24)
    r = advice.recipe
    assert r["train.batch_size"] * r["train.grad_accum"] <= 12
    assert advice.fit["fits"] and advice.fit["need"] < 16 * GIB * advisor.HEADROOM
    assert advice.regime != "prompt"  # prompt tuning runs the 16-bit 8B model: 16 GB cannot hold it
    # on an 8 GB card nothing fits: the advice says so and names a device that would
    _, small = _advise(spec, 4, 12, 24)
    errors = [w for w in small.warnings if w.code == "nothing_fits"]
    assert errors and errors[0].level == "error"
    assert "GB" in errors[0].fix and "Plan for a" in errors[0].fix
    assert not small.fit["fits"]


def test_fallbacks_in_order_and_the_device_that_fits():
    method = {"method.lora_r": 16, "method.lora_alpha": 32, "method.lora_dropout": 0.05}
    roomy = fit_regime(LLAMA3_8B, "sft", "lora", method, 80 * GIB, effective_batch=16, seq_len=64)
    assert roomy.fits and roomy.fallbacks == [] and roomy.batch_size == 16
    tight = fit_regime(LLAMA3_8B, "sft", "lora", method, 24 * GIB, effective_batch=16, seq_len=2048)
    assert tight.fits and tight.fallbacks[0] == "gradient checkpointing"
    assert tight.batch_size * tight.grad_accum == 16
    assert device_that_fits(20 * GIB) == "a RTX 4090 (24 GB)"
    assert "zero3" in device_that_fits(1000 * GIB)


def test_steps_from_rows_and_epochs():
    fields, why = advisor.recipe_with_reasons("sft", "lora", "large", rows=600)
    assert fields["train.epochs"] == 3 and fields["train.batch_size"] * fields["train.grad_accum"] == 64
    assert fields["train.max_steps"] == math.ceil(600 * 3 / 64)
    big, _ = advisor.recipe_with_reasons("dpo", "lora", "large", rows=100_000)
    assert big["train.epochs"] == 1 and big["train.max_steps"] == math.ceil(100_000 / 64)
    tiny, why = advisor.recipe_with_reasons("sft", "full", "medium", rows=5)
    assert tiny["train.batch_size"] * tiny["train.grad_accum"] == 1 and tiny["train.max_steps"] == 15
    assert "rows" in why["train.batch_size"]


def test_use_this_lists_old_to_new_and_the_tab_shows_the_reasons(tmp_path):
    from studio.ui import method_tab

    spec = RunSpec(model=_model(tmp_path, "Llama-3-8B", LLAMA3_8B))
    spec.train.learning_rate, spec.train.max_steps = 3e-5, 777  # the person's own
    answers, advice = _advise(spec, 16, 600, 24)
    changes = {k: (old, new) for k, old, new in method_tab.recipe_changes(spec, advice.recipe)}
    assert changes["train.learning_rate"] == (3e-5, advice.recipe["train.learning_rate"])
    assert changes["train.max_steps"] == (777, advice.recipe["train.max_steps"])
    assert "method.name" not in changes  # sft already: unchanged fields are not listed
    text = method_tab.advice_markdown(advice)
    assert "The numbers and why" in text and "Memory of this pick" in text
    assert text.index("The numbers and why") < text.index("Use this sets")
