"""Long context (#25.7): rope scaling (linear, dynamic, yarn, llama3) for an existing model
trained past its native context: spec fields, validated by field (a family without rotary
positions refused), passed to the loaded config, and read by the estimate."""
from __future__ import annotations

import json

import pytest
import torch

from studio.estimate import estimate
from studio.estimate.rope import rope_parameters
from studio.spec import ModelSpec, RunSpec, validate_model
from tests.arch_models import make_family
from tests.conftest import run_in_process, spec_from

NATIVE = 256  # tests/arch_models: max_position_embeddings of every tiny family


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_family("llama", tmp_path_factory.mktemp("rope") / "llama")


def _fields(msgs):
    return {p.field for p in msgs}


def test_fields_are_validated_by_name(llama, tmp_path):
    base = dict(source="pretrained", name_or_path=str(llama))
    assert validate_model(ModelSpec(**base, rope_scaling="yarn", rope_factor=2.0)) == []
    assert _fields(validate_model(ModelSpec(**base, rope_scaling="ntk", rope_factor=2.0))) == {"model.rope_scaling"}
    assert _fields(validate_model(ModelSpec(**base, rope_scaling="linear"))) == {"model.rope_factor"}
    assert _fields(validate_model(ModelSpec(**base, rope_factor=2.0))) == {"model.rope_scaling"}
    assert _fields(validate_model(ModelSpec(rope_scaling="yarn", rope_factor=2.0))) == {"model.rope_scaling"}
    gpt2 = make_family("gpt2", tmp_path / "gpt2")
    [problem] = validate_model(ModelSpec(source="pretrained", name_or_path=str(gpt2), rope_scaling="yarn",
                                         rope_factor=2.0))
    assert problem.field == "model.rope_scaling" and "gpt2" in problem.message and "no" in problem.message


def test_each_type_gives_the_parameters_transformers_validates():
    from transformers import LlamaConfig

    config = {"model_type": "llama", "max_position_embeddings": 4096, "rope_theta": 500000.0}
    for kind in ("linear", "dynamic", "yarn", "llama3"):
        params, context = rope_parameters(config, kind, 4.0)
        assert context == 16384 and params["rope_type"] == kind and params["rope_theta"] == 500000.0
        cfg = LlamaConfig(max_position_embeddings=context, rope_parameters=params)
        cfg.validate_rope()  # the keys each type needs, no more
    assert rope_parameters(config, "yarn", 2.0, original=2048)[0]["original_max_position_embeddings"] == 2048


def test_gemma3_scales_only_its_global_layers():
    config = {"model_type": "gemma3_text", "max_position_embeddings": 32768, "layer_types": ["sliding_attention",
              "full_attention"], "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    params, context = rope_parameters(config, "linear", 4.0)
    assert params["full_attention"] == {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6}
    assert params["sliding_attention"] == config["rope_parameters"]["sliding_attention"] and context == 131072


def test_the_estimate_uses_the_scaled_context(llama):
    plain = RunSpec.from_dict({"model": {"source": "pretrained", "name_or_path": str(llama), "max_seq_len": 512}})
    scaled = RunSpec.from_dict({"model": {"source": "pretrained", "name_or_path": str(llama), "max_seq_len": 512,
                                          "rope_scaling": "yarn", "rope_factor": 2.0}})
    assert estimate(plain)["context_tokens"] == NATIVE and estimate(scaled)["context_tokens"] == 2 * NATIVE
    assert estimate(scaled)["parameters"] == estimate(plain)["parameters"]  # positions cost no weights


def test_a_tiny_llama_with_yarn_trains_at_twice_its_native_context(llama, tmp_path, capsys, monkeypatch):
    from transformers import AutoConfig

    import studio.methods.causal_lm as causal_lm

    from studio.model.load import build_or_load

    spec = ModelSpec(source="pretrained", name_or_path=str(llama), rope_scaling="yarn", rope_factor=2.0,
                     max_seq_len=2 * NATIVE)
    model = build_or_load(spec)
    rope = model.config.rope_parameters
    assert (rope["rope_type"], rope["factor"], rope["original_max_position_embeddings"]) == ("yarn", 2.0, NATIVE)
    assert model.config.max_position_embeddings == 2 * NATIVE
    plain = build_or_load(ModelSpec(source="pretrained", name_or_path=str(llama)))
    assert not torch.equal(model.model.rotary_emb.inv_freq, plain.model.rotary_emb.inv_freq)

    # one training step on rows of 2 x 256 tokens (packed text), through the worker's path; the
    # blocks are cut at min(max_seq_len, the model's context), so 256 without the scaling
    blocks, real_pack = [], causal_lm.pack
    monkeypatch.setattr(causal_lm, "pack", lambda ds, tok, block: blocks.append(block) or real_pack(ds, tok, block))
    run = run_in_process(spec_from(
        name="yarn", model={"source": "pretrained", "name_or_path": str(llama), "max_seq_len": 2 * NATIVE,
                            "rope_scaling": "yarn", "rope_factor": 2.0},
        data={"sources": [{"path": "assets/data/corpus_train.jsonl"}], "eval_fraction": 0.0, "max_rows": 200,
              "packing": True},
        method={"name": "pretrain", "regime": "full"},
        train={"max_steps": 1, "batch_size": 1, "learning_rate": 1e-2, "log_every": 1, "warmup_steps": 0,
               "eval_every": 0, "save_every": 0}), tmp_path / "runs")
    assert "Rope scaling: yarn x2, context 256 -> 512 tokens" in capsys.readouterr().out
    assert blocks and set(blocks) == {2 * NATIVE}
    saved = json.loads((run / "final" / "config.json").read_text())
    assert saved["rope_parameters"]["rope_type"] == "yarn" and saved["max_position_embeddings"] == 2 * NATIVE
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m and m.get("step") == 1 for m in metrics)
    assert AutoConfig.from_pretrained(run / "final").rope_parameters["factor"] == 2.0


def test_a_family_without_rotary_positions_is_refused_at_load(tmp_path):
    from studio.model.load import build_or_load

    bloom = make_family("bloom", tmp_path / "bloom")
    with pytest.raises(ValueError, match=r"^model.rope_scaling: .*bloom"):
        build_or_load(ModelSpec(source="pretrained", name_or_path=str(bloom), rope_scaling="linear", rope_factor=2.0))
