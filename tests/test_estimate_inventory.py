"""Parameter counts against the real thing: published configs built on the meta device
(every architecture written out, and one that is not), trainable counts per regime
against peft, and many option combinations of the studio's own model."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from studio import estimate as est
from studio.spec import MethodSpec, ModelSpec

# config.json fields of published models (the fields that decide the shapes)
PUBLISHED = {
    "Llama-2-7b": (dict(model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                        max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False), 6_738_415_616),
    "Llama-3-8B": (dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                        max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False), 8_030_261_248),
    "Llama-3.2-1B": (dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                          num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                          rope_theta=500000.0, max_position_embeddings=131072, tie_word_embeddings=True,
                          rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
                     1_235_814_400),
    "Mistral-7B-v0.1": (dict(model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                             num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                             sliding_window=4096, max_position_embeddings=32768, tie_word_embeddings=False),
                        7_241_732_096),
    "Qwen2-0.5B": (dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                        max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True,
                        use_sliding_window=False, sliding_window=32768), 494_032_768),
    "Qwen2-7B": (dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                      num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                      max_position_embeddings=131072, tie_word_embeddings=False), 7_615_616_512),
    "Qwen3-0.6B": (dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                        max_position_embeddings=40960, tie_word_embeddings=True), None),
    "gemma-2b": (dict(model_type="gemma", vocab_size=256000, hidden_size=2048, intermediate_size=16384,
                      num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
                      max_position_embeddings=8192), 2_506_172_416),
    "gemma-2-2b": (dict(model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                        sliding_window=4096, max_position_embeddings=8192), 2_614_341_888),
    "gemma-3-1b": (dict(model_type="gemma3_text", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                        num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                        sliding_window=512, max_position_embeddings=32768), 999_885_952),
    "gpt2": (dict(model_type="gpt2", vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024,
                  n_ctx=1024), 124_439_808),
    "gpt2-medium": (dict(model_type="gpt2", vocab_size=50257, n_embd=1024, n_layer=24, n_head=16,
                         n_positions=1024), 354_823_168),
    "phi-2": (dict(model_type="phi", vocab_size=51200, hidden_size=2560, intermediate_size=10240,
                   num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                   partial_rotary_factor=0.4, max_position_embeddings=2048, tie_word_embeddings=False),
              2_779_683_840),
    "Phi-3-mini-4k": (dict(model_type="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                           num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                           max_position_embeddings=4096, tie_word_embeddings=False, pad_token_id=32000),
                      3_821_079_552),
}


def meta_model(config: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    kind = cfg.pop("model_type")
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **cfg))


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_configs_are_counted_exactly(name):
    config, known = PUBLISHED[name]
    model = meta_model(config)
    real = sum(p.numel() for p in model.parameters())
    counted = est.count_parameters(config)
    assert counted["total"] == real
    assert counted["embedding"] + counted["non_embedding"] == real
    if known is not None:
        assert real == known


@pytest.mark.parametrize("name", ["Llama-3-8B", "gpt2", "phi-2", "Phi-3-mini-4k", "Qwen2-0.5B", "gemma-3-1b"])
def test_published_configs_trainable_counts_per_regime(name):
    from peft import get_peft_model

    import studio.model as sm

    config, _ = PUBLISHED[name]
    # the published widths with two blocks: the count is per block, and meta builds stay quick
    config = {**config, **({"n_layer": 2} if "n_layer" in config else {"num_hidden_layers": 2})}
    methods = [MethodSpec(regime="lora", lora_r=16), MethodSpec(regime="dora", lora_r=8),
               # named targets, as this family names them (adapters refuse names a model lacks)
               MethodSpec(regime="lora", lora_r=8, target_modules={"gpt2": "c_attn", "phi3": "qkv_proj"}.get(
                   config["model_type"], "q_proj,v_proj")),
               MethodSpec(regime="ia3"), MethodSpec(regime="prefix", num_virtual_tokens=20),
               MethodSpec(regime="prompt", num_virtual_tokens=20),
               MethodSpec(regime="freeze", freeze_trainable_layers=2, freeze_extra_modules="norm")]
    for method in methods:
        model = meta_model(config)
        with torch.device("meta"):
            if method.regime == "freeze":
                model = sm.apply_regime(model, method)
            else:
                model = get_peft_model(model, sm.peft_config_for(method, model))
        real = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert est.trainable_parameters(config, method) == real, (name, method.regime, method.target_modules)
    if name == "Llama-3-8B":  # the full model: LoRA r=16 on every linear layer
        assert est.trainable_parameters(PUBLISHED[name][0], MethodSpec(regime="lora", lora_r=16)) == 41_943_040


def test_many_option_combinations_count_exactly_on_meta():
    import studio.model as sm
    from transformers import AutoModelForCausalLM

    axes = [("sinusoidal", "rope", "alibi", "yarn"), ("mha", "mqa", "gqa"), ("layernorm", "rmsnorm"),
            ("relu", "gelu", "silu", "leaky_relu", "swiglu"), (None, 16), (False, True), (False, True)]
    combos = random.Random(7).sample(list(itertools.product(*axes)), 60)
    for pe, att, norm, act, window, bias, tie in combos:
        spec = ModelSpec(vocab_size=101, d_model=48, n_heads=6, n_kv_heads={"mha": 6, "mqa": 1, "gqa": 3}[att],
                         d_ff=80, n_layers=3, positional_encoding=pe, yarn_factor=2.0, attention=att, norm=norm,
                         activation=act, sliding_window=window, attention_bias=bias, tie_embeddings=tie)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(sm.config_for(spec))
        assert est.count_parameters(spec)["total"] == sum(p.numel() for p in model.parameters()), spec

