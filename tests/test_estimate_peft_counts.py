"""Trainable parameters by the estimate (config arithmetic) against peft on the real
module tree, for every regime the advisor can pick and the LoRA variants, on three
real shapes built on the meta device (no weights, no download)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from studio.estimate import trainable_parameters  # noqa: E402
from studio.model.adapters import apply_regime, peft_config_for  # noqa: E402
from studio.spec import MethodSpec  # noqa: E402

CONFIGS = {
    "llama-3-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                       rms_norm_eps=1e-5, hidden_act="silu"),
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         max_position_embeddings=32768, tie_word_embeddings=True, rms_norm_eps=1e-6,
                         hidden_act="silu"),
    "gemma-2-2b": dict(model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                       num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                       max_position_embeddings=8192, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
                       sliding_window=4096),
}
# every regime the advisor's chart ends in, and the LoRA variants (#19)
METHODS = {
    "full": MethodSpec(regime="full"),
    "freeze": MethodSpec(regime="freeze", freeze_trainable_layers=2),
    "lora": MethodSpec(regime="lora", lora_r=16),
    "dora": MethodSpec(regime="dora", lora_r=16),
    "qlora": MethodSpec(regime="qlora", lora_r=64),  # the adapters over a 4-bit base: LoRA's shapes
    "prefix": MethodSpec(regime="prefix", num_virtual_tokens=20),
    "prompt": MethodSpec(regime="prompt", num_virtual_tokens=20),
    "ia3": MethodSpec(regime="ia3"),
    "rslora": MethodSpec(regime="lora", lora_r=32, use_rslora=True),
    "loraplus": MethodSpec(regime="lora", lora_r=8, loraplus_ratio=16),
    "lora-int8": MethodSpec(regime="qlora", lora_r=16, quant_bits=8),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def shape(request):
    cfg = dict(CONFIGS[request.param])
    return request.param, CONFIGS[request.param], AutoConfig.for_model(cfg.pop("model_type"), **cfg)


def _peft_count(config, method: MethodSpec) -> int:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        if method.regime == "qlora":
            # bitsandbytes cannot quantise meta tensors; the adapters it gets are LoRA's on the same
            # Linear modules (prepare_model_for_kbit_training freezes the rest)
            from peft import get_peft_model

            for p in model.parameters():
                p.requires_grad_(False)
            model = get_peft_model(model, peft_config_for(method, model))
        else:
            model = apply_regime(model, method)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list(METHODS))
def test_trainable_count_equals_peft_on_the_meta_model(shape, name):
    label, config_dict, config = shape
    method = METHODS[name]
    want = _peft_count(config, method)
    assert trainable_parameters(config_dict, method) == want, (label, name)
    assert want > 0
