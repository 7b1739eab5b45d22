"""Tiny random-weight copies of real model families, made on the spot (no hub).

`make_family(name, folder)` saves a 2-layer, hidden-64 model of that family with the
studio's own tokenizer (assets/tokenizer) beside it, so every family reads the same
vocabulary and chat template and the shipped data works with each of them.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "assets" / "tokenizer"

# The ten families people fine-tune most, then the mixture-of-experts and older ones.
DENSE = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3", "gpt2", "olmo2", "granite")
MOE_AND_OLDER = ("mixtral", "qwen2_moe", "gpt_neox", "falcon", "bloom")
FAMILIES = DENSE + MOE_AND_OLDER

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=256, tie_word_embeddings=False)
# Grouped-query attention (2 K/V heads) where the family has it; peft sizes a prefix by
# num_key_value_heads, so a family without GQA must not carry the attribute.
NO_GQA = ("gpt2", "gpt_neox", "bloom", "falcon")
# Each family's own names for the same sizes (transformers keeps the originals' names).
EXTRA = {
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=256),
    "bloom": dict(n_layer=2, n_head=4),
    "falcon": dict(num_kv_heads=1, new_decoder_architecture=False, multi_query=True, ffn_hidden_size=128),
    # output_router_logits: the router's auxiliary loss on, as MoE fine-tuning recipes set it
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2, output_router_logits=True),
    "qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                      shared_expert_intermediate_size=64, decoder_sparse_step=1, output_router_logits=True),
    "gemma2": dict(head_dim=16, query_pre_attn_scalar=16),
    "gemma3_text": dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=64),
}


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


def config_for(family: str, vocab_size: int, special: dict):
    from transformers import AutoConfig

    gqa = {} if family in NO_GQA else {"num_key_value_heads": 2}
    return AutoConfig.for_model(family, vocab_size=vocab_size, **COMMON, **gqa, **EXTRA.get(family, {}), **special)


def make_family(family: str, folder: Path, seed: int = 0) -> Path:
    """A tiny random model of `family` saved (safetensors) in `folder` with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = tokenizer()
    # Special ids inside the small vocabulary: several families' defaults point past it
    # (gpt2's 50256, olmo2's 100257), which transformers only warns about.
    special = dict(bos_token_id=tok.bos_token_id or tok.eos_token_id, eos_token_id=tok.eos_token_id,
                   pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_for(family, len(tok), special))
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
