"""Memory against a real step: the bytes of the weights, gradients and optimizer states a
real optimizer step holds, activation peaks measured with a tensor-allocation tracker,
the KV cache generation holds, and the sections/RunSpec forms of estimate_memory."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from studio import estimate as est
from studio.spec import MethodSpec, ModelSpec, RunSpec, TrainSpec

REPO = Path(__file__).resolve().parent.parent


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



# -- KV cache ----------------------------------------------------------------------------


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

