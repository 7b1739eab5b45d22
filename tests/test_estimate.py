"""The estimator against the real thing: parameter counts of published configs (built on
the meta device), memory bytes of the tensors a real optimizer step holds, activation
peaks measured with a tensor-allocation tracker, KV caches, FLOPs, and the CLI."""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studio import estimate as est
from studio.spec import MethodSpec, ModelSpec, RunSpec, TrainSpec

REPO = Path(__file__).resolve().parent.parent

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
               MethodSpec(regime="lora", lora_r=8, target_modules="q_proj,v_proj,c_attn,qkv_proj"),
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


# -- memory: weights, gradients, optimizer states, byte for byte ------------------------


def _bench():
    """bench/estimate_memory.py holds the measuring tools (allocation tracker, held bytes)."""
    spec = importlib.util.spec_from_file_location("bench_estimate_memory", REPO / "bench" / "estimate_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def _storage_bytes(tensors, seen: set) -> int:
    return BENCH.storage_bytes(tensors, seen)


def _make_optimizer(name, model):
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=1e-3, scale_parameter=False, relative_step=False)
    if name == "lion":
        import bitsandbytes as bnb

        return bnb.optim.Lion(params, lr=1e-4)
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(params, lr=1e-3)
        manager = bnb.optim.GlobalOptimManager.get_instance()
        for module in model.modules():  # what transformers.Trainer does for 8-bit bnb optimizers
            if isinstance(module, torch.nn.Embedding):
                manager.register_module_override(module, "weight", {"optim_bits": 32})
        return optimizer
    optim = pytest.importorskip("studio.optim")
    factory = {"muon": getattr(optim, "MuonFactory", None), "sophia": getattr(optim, "SophiaFactory", None)}[name]
    if factory is None:
        pytest.skip(f"studio.optim has no {name}")
    return factory()(model, lr=1e-3)


MEMORY_CASES = [
    # (name, spec overrides, regime, optimizer, precision, mixed precision)
    ("llama-adamw-fp32", {}, "full", "adamw", "fp32", True),
    ("studio-adamw-bf16", dict(positional_encoding="alibi", norm="layernorm", activation="gelu", attention_bias=True), "full", "adamw", "bf16", False),
    ("llama-adamw-bf16-mixed", {}, "full", "adamw", "bf16", True),
    ("llama-adafactor", dict(tie_embeddings=False), "full", "adafactor", "fp32", True),
    ("llama-adafactor-bf16", {}, "full", "adafactor", "bf16", False),
    ("mistral-lion", dict(sliding_window=8), "full", "lion", "fp32", True),
    ("llama-adamw8bit", dict(tie_embeddings=False), "full", "adamw_8bit", "fp32", True),
    ("llama-muon", {}, "full", "muon", "fp32", True),
    ("llama-sophia", {}, "full", "sophia", "fp32", True),
    ("llama-freeze", {}, "freeze", "adamw", "fp32", True),
    ("llama-freeze-bf16-mixed", {}, "freeze", "adamw", "bf16", True),
    ("studio-lora", dict(positional_encoding="sinusoidal", activation="relu"), "lora", "adamw", "fp32", True),
    ("llama-lora-bf16", {}, "lora", "adamw", "bf16", False),
    ("studio-lora-bf16-mixed", dict(norm="layernorm"), "lora", "adamw", "bf16", True),
    ("llama-dora-8bit", dict(d_model=128, d_ff=256), "dora", "adamw_8bit", "fp32", True),
    ("llama-qlora", dict(d_model=128, d_ff=256), "qlora", "adamw", "fp32", True),
    ("studio-qlora-nodq", dict(norm="layernorm", d_model=128, d_ff=256), "qlora", "adafactor", "fp32", True),
]


def _storage_dtype(regime: str, precision: str, mixed: bool):
    """The dtype the studio's worker loads weights in (studio.methods.common.load_model):
    trained weights stay fp32 under mixed precision, a frozen base goes half."""
    if regime == "qlora":
        return None
    if mixed and regime in ("full", "freeze"):
        return "fp32"
    return precision


@pytest.mark.parametrize("case", MEMORY_CASES, ids=[c[0] for c in MEMORY_CASES])
def test_weights_gradients_optimizer_match_a_real_step_byte_for_byte(case):
    import studio.model as sm

    name, overrides, regime, optimizer, precision, mixed = case
    spec = ModelSpec(**{**dict(vocab_size=96, d_model=64, n_heads=4, n_kv_heads=2, d_ff=96, n_layers=2), **overrides})
    method = MethodSpec(regime=regime, lora_r=4, double_quant="nodq" not in name)
    train = TrainSpec(optimizer=optimizer, precision=precision, batch_size=2)
    torch.manual_seed(0)
    model = sm.apply_regime(sm.build_or_load(spec, None, method, dtype=_storage_dtype(regime, precision, mixed)), method)
    opt = _make_optimizer(optimizer, model)
    ids = torch.randint(0, 96, (2, 12))
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed and precision == "bf16"):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    real = BENCH.held_bytes(model, opt)
    guess = est.estimate_memory(spec, method, train, mixed_precision=mixed)
    assert {k: guess[k] for k in real} == real


# -- activations: within 15% of a measured peak ------------------------------------------

ACTIVATION_CASES = [
    # (name, spec overrides, regime, precision, checkpointing, padded batch); bf16 is
    # autocast over fp32 trained weights (mixed) unless the name says "pure"
    ("llama", {}, "full", "fp32", False, True),
    ("llama-unpadded", {}, "full", "fp32", False, False),
    ("mistral", dict(sliding_window=16), "full", "fp32", False, False),
    ("studio-sinusoidal-layernorm-gelu", dict(positional_encoding="sinusoidal", norm="layernorm", activation="gelu"), "full", "fp32", False, True),
    ("studio-alibi-relu", dict(positional_encoding="alibi", activation="relu"), "full", "fp32", False, True),
    ("llama-bf16-pure", {}, "full", "bf16", False, True),
    ("llama-bf16-autocast", {}, "full", "bf16", False, True),
    ("studio-bf16-autocast", dict(positional_encoding="alibi", norm="layernorm", activation="gelu"), "full", "bf16", False, True),
    ("llama-checkpointing", {}, "full", "fp32", True, True),
    ("llama-checkpointing-bf16-autocast", dict(n_layers=4), "full", "bf16", True, True),
    ("studio-checkpointing", dict(positional_encoding="alibi", norm="layernorm"), "full", "fp32", True, True),
    # wide and tied: the head's share of the shared gradient (V x H) outlives the recompute
    ("llama-checkpointing-tied-wide", dict(d_model=256, n_heads=8, n_kv_heads=4, d_ff=704, vocab_size=1024), "full", "fp32", True, True),
    ("studio-lora-checkpointing", dict(positional_encoding="alibi", norm="layernorm", activation="gelu"), "lora", "fp32", True, True),
    ("llama-lora", {}, "lora", "fp32", False, True),
    ("llama-lora-bf16-autocast", {}, "lora", "bf16", False, True),
    ("studio-lora", dict(positional_encoding="sinusoidal", norm="layernorm", activation="silu"), "lora", "fp32", False, True),
    ("llama-qlora", {}, "qlora", "fp32", False, True),
    ("llama-freeze", {}, "freeze", "fp32", False, True),
]


@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=[c[0] for c in ACTIVATION_CASES])
def test_activations_within_15_percent_of_the_measured_peak(case):
    import studio.model as sm

    name, overrides, regime, precision, checkpointing, padded = case
    mixed = "pure" not in name
    spec = ModelSpec(**{**dict(vocab_size=256, d_model=64, n_heads=4, n_kv_heads=2, d_ff=160, n_layers=2), **overrides})
    method = MethodSpec(regime=regime, lora_r=8, freeze_trainable_layers=1)
    torch.manual_seed(0)
    model = sm.apply_regime(sm.build_or_load(spec, None, method, dtype=_storage_dtype(regime, precision, mixed)), method)
    batch, seq = 4, 64
    ids = torch.randint(0, 256, (batch, seq))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :16] = 0
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.bfloat16 if mixed and precision == "bf16" else None
    measured, _ = BENCH.activation_peak(model, ids, mask, optimizer, checkpointing, autocast)
    train = TrainSpec(batch_size=batch, precision=precision, gradient_checkpointing="on" if checkpointing else "off")
    guess = est.estimate_memory(spec, method, train, seq_len=seq, padded=padded, mixed_precision=mixed)["activations"]
    assert abs(guess / measured - 1) < 0.15, (guess, measured)


# -- KV cache, FLOPs, time ------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, dict(sliding_window=6), dict(positional_encoding="alibi", sliding_window=6),
                                       dict(attention="mqa", n_kv_heads=1, norm="layernorm")])
def test_kv_cache_matches_the_cache_generation_holds(overrides):
    import studio.model as sm

    spec = ModelSpec(**{**dict(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, n_layers=3), **overrides})
    model = sm.build_model(spec).eval()
    ids = torch.randint(0, 64, (3, 10))
    with torch.no_grad():
        out = model(ids[:, :-1], use_cache=True)
        out = model(ids[:, -1:], past_key_values=out.past_key_values, use_cache=True)
    seen: set = set()
    held = sum(_storage_bytes([layer.keys, layer.values], seen) for layer in out.past_key_values.layers)
    assert est.estimate_memory(spec, MethodSpec(), TrainSpec(batch_size=3), seq_len=10)["kv_cache"] == held


def test_flops_per_token_is_six_n_plus_attention():
    from torch.utils.flop_counter import FlopCounterMode

    import studio.model as sm

    spec = ModelSpec(vocab_size=128, d_model=64, n_heads=4, n_kv_heads=4, attention="mha", d_ff=160, n_layers=2)
    model = sm.build_model(spec).train()
    batch, seq = 2, 32
    ids = torch.randint(0, 128, (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    counted = counter.get_total_flops() / (batch * seq)
    inv = est.inventory(spec)
    # every matrix product of forward and backward: 6 x the matmul weights per token
    # (torch's counter has no formula for the CPU attention kernel, so that part is checked by formula)
    assert counted == 6 * est.matmul_parameters(inv)
    attention = 12 * spec.n_layers * seq * spec.d_model
    assert est.flops_per_token(inv, seq) == counted + attention
    assert est.flops_per_token(inv, seq, training=False) == (counted + attention) / 3
    assert est.flops_per_token(inv, seq, MethodSpec(regime="lora")) == 2 * (counted + attention) / 3


def test_estimate_time_arithmetic():
    out = est.estimate_time(tokens=1e9, flops_per_token=6e9, peak_tflops=1000, utilisation=0.5)
    assert out["tokens_per_second"] == pytest.approx(1000e12 * 0.5 / 6e9)
    assert out["seconds"] == pytest.approx(1e9 / out["tokens_per_second"])
    with pytest.raises(est.EstimateError):
        est.estimate_time(1, 1, peak_tflops=100, utilisation=0)


def test_memory_sections_fit_verdict_and_runspec():
    spec = RunSpec(model=ModelSpec(vocab_size=32000, d_model=2048, n_heads=16, n_kv_heads=4, d_ff=5632, n_layers=22),
                   method=MethodSpec(regime="full"), train=TrainSpec(batch_size=4, optimizer="adamw", precision="bf16"))
    full = est.estimate_memory(spec, device_memory_gb=80)
    parts = ("weights", "gradients", "optimizer", "activations")
    assert full["total"] == sum(full[k] for k in parts)
    n = est.count_parameters(spec.model)["total"]
    # bf16 is mixed precision: fp32 weights and gradients under autocast; pure bf16 halves them
    assert full["weights"] == 4 * n and full["gradients"] == 4 * n and full["settings"]["weights_dtype"] == "fp32"
    pure = est.estimate_memory(spec, mixed_precision=False)
    assert pure["weights"] == 2 * n and pure["gradients"] == 2 * n and pure["activations"] < full["activations"]
    assert est.estimate_memory(spec, device_memory_gb=8)["fits"] is False
    assert full["fits"] is True
    qlora = est.estimate_memory(spec.model, MethodSpec(regime="qlora"), spec.train)
    assert qlora["weights"] < full["weights"] / 2 and qlora["optimizer"] < full["optimizer"] / 20
    long_full = est.estimate_memory(spec, seq_len=2048)
    ckpt = est.estimate_memory(spec, gradient_checkpointing=True, seq_len=2048)
    assert ckpt["activations"] < long_full["activations"] / 3
    act = {b: est.estimate_memory(spec, batch_size=b, seq_len=1024)["activations"] for b in (2, 4, 8)}
    assert act[8] - act[4] == pytest.approx(2 * (act[4] - act[2]))  # linear in the batch
    assert act[2] > est.estimate_memory(spec, batch_size=2, seq_len=512)["activations"]


# -- sources and the CLI ------------------------------------------------------------------


def _cli(argv):
    parser = argparse.ArgumentParser()
    est.add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_for_each_kind_of_source(tmp_path, capsys):
    import studio.model as sm

    spec = ModelSpec(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, n_layers=2)
    model = sm.build_model(spec)
    model.save_pretrained(tmp_path / "run" / "final")
    run = RunSpec(model=spec, method=MethodSpec(regime="lora", lora_r=4))
    run.save(tmp_path / "run" / "spec.yaml")
    run.save(tmp_path / "spec.yaml")
    real = sum(p.numel() for p in model.parameters())

    sources = [str(tmp_path / "spec.yaml"), str(tmp_path / "run" / "final" / "config.json"),
               str(tmp_path / "run" / "final"), str(tmp_path / "run"), "tiny", "llama-8b"]
    for source in sources:
        assert _cli(["estimate", source, "--batch-size", "2", "--seq-len", "16", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert isinstance(out["parameters"], int) and isinstance(out["trainable_parameters"], int)
        assert set(out["memory_bytes"]) >= {"weights", "gradients", "optimizer", "activations", "total"}
        assert all(isinstance(v, int) for v in out["memory_bytes"].values())
        if "llama-8b" == source:
            assert out["parameters"] == 8_030_261_248
        elif source != "tiny":
            assert out["parameters"] == real, source
    # the spec asks for LoRA; the flags override it
    assert _cli(["estimate", str(tmp_path / "spec.yaml"), "--json"]) == 0
    lora = json.loads(capsys.readouterr().out)
    assert lora["trainable_parameters"] < lora["parameters"]
    assert _cli(["estimate", str(tmp_path / "spec.yaml"), "--regime", "full", "--optimizer", "lion",
                 "--dtype", "bf16", "--device-memory-gb", "1", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["trainable_parameters"] == real and full["memory_bytes"]["weights"] == 4 * real  # fp32 under autocast
    assert full["settings"]["dtype"] == "bf16" and full["settings"]["mixed_precision"]
    assert full["memory_bytes"]["optimizer"] == 4 * real and full["fits"] is True
    assert _cli(["estimate", "tiny"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert _cli(["estimate", str(tmp_path / "nowhere")]) == 2
    assert "name_or_path" in capsys.readouterr().err


def test_estimate_imports_no_torch():
    code = ("import sys, studio.estimate as e; from studio.spec import ModelSpec;"
            "e.count_parameters(ModelSpec(vocab_size=100)); e.estimate_from_source('llama-1b');"
            "assert not any(m in sys.modules for m in ('torch', 'transformers', 'peft')), 'heavy import'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
