"""A fresh model from a ModelSpec: the standard transformers class when one fits
(Llama, or Mistral for a sliding window), the studio's own model otherwise.

The config numbers come from studio.estimate.spec_config, so the estimator and the
built model read the same dictionary.
"""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, PreTrainedConfig

from studio.estimate import spec_config
from studio.model.custom import StudioConfig

CONFIG_CLASSES = {"llama": LlamaConfig, "mistral": MistralConfig, "studio": StudioConfig}
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def torch_dtype(dtype) -> torch.dtype | None:
    """"fp32" | "bf16" | "fp16" | a torch.dtype | None/"auto" (None: keep the default)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype: '{dtype}' is not one of fp32, bf16, fp16, auto") from None


def config_for(model_spec, vocab_size: int | None = None, special_tokens: dict | None = None) -> PreTrainedConfig:
    """The PretrainedConfig a scratch ModelSpec becomes (no weights)."""
    data = spec_config(model_spec, vocab_size)
    kind = data.pop("model_type")
    ids = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}
    ids.update(special_tokens or {})
    return CONFIG_CLASSES[kind](**data, **ids)


def special_token_ids(tokenizer) -> dict:
    if tokenizer is None:
        return {}
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def build_model(model_spec, tokenizer=None, vocab_size: int | None = None, dtype=None):
    """Randomly initialised model; vocab_size: the spec's, else len(tokenizer)."""
    if model_spec.vocab_size is None and vocab_size is None and tokenizer is not None:
        vocab_size = len(tokenizer)
    config = config_for(model_spec, vocab_size, special_token_ids(tokenizer))
    return AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
