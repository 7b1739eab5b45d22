"""Which modules IA3 scales, per family: the one table and rule that both the worker
(studio.model.adapters, building peft's IA3Config) and the estimate (trainable counts)
use, so the estimate counts what peft trains.

The table is peft 0.21's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING and
..._FEEDFORWARD_MODULES_MAPPING, written out here because importing peft costs seconds
and torch, and the estimate runs on every keystroke of the UI;
tests/test_arch_matrix.py checks it against peft's own mapping.
"""
from __future__ import annotations

from studio.spec import comma_list

# peft's mapping: model_type -> (target modules, feed-forward modules among them)
PEFT_IA3 = {
    "t5": (["k", "v", "wo"], ["wo"]), "mt5": (["k", "v", "wi_1"], []),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "bloom": (["query_key_value", "mlp.dense_4h_to_h"], ["mlp.dense_4h_to_h"]),
    "roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "opt": (["q_proj", "k_proj", "fc2"], ["fc2"]), "gptj": (["q_proj", "v_proj", "fc_out"], ["fc_out"]),
    "gpt_neox": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "gpt_neo": (["q_proj", "v_proj", "c_proj"], ["c_proj"]), "bart": (["q_proj", "v_proj", "fc2"], ["fc2"]),
    "gpt_bigcode": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "llama4": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mixtral": (["k_proj", "v_proj", "w2"], ["w2"]),
    "bert": (["key", "value", "output.dense"], ["output.dense"]),
    "deberta-v2": (["key_proj", "value_proj", "output.dense"], ["output.dense"]),
    "deberta": (["in_proj", "output.dense"], ["output.dense"]),
    "RefinedWebModel": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "RefinedWeb": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "falcon": (["query_key_value", "dense_4h_to_h"], ["dense_4h_to_h"]),
    "phi": (["q_proj", "v_proj", "fc2"], ["fc2"]),
    "gemma": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma3_text": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen3": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
}
# Families peft has no IA3 default for: the same roles (K/V and the FFN's output
# projection, scaled on its input) under each family's names. The studio's own model
# uses Llama's names.
IA3_FALLBACK = {
    "phi3": (["qkv_proj", "down_proj"], ["down_proj"]),
    "studio": PEFT_IA3["llama"],
}
# For any other family: the first attention group and FFN output projection it has.
IA3_ATTENTION = (("k_proj", "v_proj"), ("qkv_proj",), ("query_key_value",), ("c_attn",), ("Wqkv",))
IA3_FFN_OUT = ("down_proj", "dense_4h_to_h", "fc2", "c_proj", "w2", "fc_out")


def has_module(names, target: str) -> bool:
    """peft's matching: a target names a module by its full name or a dotted suffix."""
    return any(n == target or n.endswith("." + target) for n in names)


def _is_ffn_out(target: str) -> bool:
    return target.rsplit(".", 1)[-1] in IA3_FFN_OUT


def family_defaults(model_type: str) -> tuple[list[str], list[str]]:
    targets, feedforward = IA3_FALLBACK.get(model_type) or PEFT_IA3.get(model_type) or ([], [])
    return list(targets), list(feedforward)


def ia3_modules(model_type: str, linear_names, requested: str | None = None) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules) for IA3 on a model whose linear modules are
    `linear_names`: the names in `requested` (method.target_modules, unless 'all-linear' or
    empty), else the family's default kept to the names the model has, completed by the
    attention group and FFN output the model has where the default misses one. Empty
    when nothing fits (the caller says so, naming the field)."""
    names = set(linear_names)
    wanted = comma_list(requested or "") if (requested or "").strip().lower() != "all-linear" else []
    if wanted:
        return wanted, [n for n in wanted if _is_ffn_out(n)]
    targets, feedforward = family_defaults(model_type)
    targets = [t for t in targets if has_module(names, t)]
    if not any(not _is_ffn_out(t) for t in targets):
        targets += next((list(g) for g in IA3_ATTENTION if all(has_module(names, n) for n in g)), [])
    if not any(_is_ffn_out(t) for t in targets):
        targets += [n for n in IA3_FFN_OUT if has_module(names, n)][:1]
    return targets, [t for t in targets if t in feedforward or _is_ffn_out(t)]
