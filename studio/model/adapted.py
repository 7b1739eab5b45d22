"""What a parameter regime adapts, said in the model's own names: which modules (and
fused expert tensors) carry an adapter or train, how many of each, and how many
parameters train, checked against peft's own counts. Printed to train.log by
apply_regime, so a run on an unfamiliar family says what it really touched."""
from __future__ import annotations

import re

BLOCK = re.compile(r"^(?:.*?\.)?(?:layers|h|blocks|layer)\.\d+\.")
PEFT_PARTS = re.compile(r"\.(?:base_layer|lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector|ia3_l|default)\b")


def linear_names(model) -> set[str]:
    """Full names of the linear layers an adapter can wrap (nn.Linear, GPT-2's Conv1D,
    4-bit Linear), without the output layer (an adapter there would retrain the vocabulary)."""
    from torch import nn

    out_layer = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = set()
    for name, module in model.named_modules():
        # the output layer, or a classifier's head (peft trains that whole, as modules_to_save)
        if module is out_layer or not name or name in ("score", "classifier"):
            continue
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(name)
    return names


def fused_expert_parameters(model) -> dict[str, int]:
    """'mlp.experts.gate_up_proj' -> how many layers hold it: the 3-D expert tensors of a
    mixture-of-experts layer (transformers 5 fuses each layer's experts into one)."""
    found: dict[str, int] = {}
    for name, param in model.named_parameters():
        owner = name.rsplit(".", 1)[0]
        if param.dim() == 3 and owner.rsplit(".", 1)[-1] == "experts":
            key = BLOCK.sub("", name)
            found[key] = found.get(key, 0) + 1
    return found


def _pattern(name: str) -> str:
    """'base_model.model.model.layers.1.self_attn.q_proj' -> 'self_attn.q_proj'."""
    name = PEFT_PARTS.sub("", name)
    name = BLOCK.sub("", name)
    return name.replace("base_model.model.", "", 1)


def _peft_targets(model) -> dict[str, int]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if not isinstance(module, BaseTunerLayer) or ".base_layer" in name:
            continue
        pname = getattr(module, "parameter_name", None)  # lora.ParamWrapper: one fused tensor
        key = _pattern(name) + (f".{pname}" if pname else "")
        counts[key] = counts.get(key, 0) + 1
        # nested ParamWrappers (one per fused tensor of the same module) sit under base_layer
        inner = getattr(module, "base_layer", None)
        while isinstance(inner, BaseTunerLayer) and getattr(inner, "parameter_name", None):
            k = _pattern(name) + f".{inner.parameter_name}"
            counts[k] = counts.get(k, 0) + 1
            inner = getattr(inner, "base_layer", None)
    return counts


def _trainable_modules(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    seen = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = name.rsplit(".", 1)[0]
        if owner in seen:
            continue
        seen.add(owner)
        counts[_pattern(owner)] = counts.get(_pattern(owner), 0) + 1
    return counts


def adapted_summary(model, regime: str | None = None) -> dict:
    """{regime, trainable, total, modules: {name: count}, notes, and for a peft model
    peft_trainable / peft_targets (peft's own counts) and matches_peft}."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    is_peft = hasattr(model, "peft_config") and hasattr(model, "get_nb_trainable_parameters")
    config = next(iter(model.peft_config.values())) if is_peft else None
    if regime is None:
        regime = str(config.peft_type.value).lower() if config is not None else "full"
    out = {"regime": regime, "trainable": trainable, "total": sum(p.numel() for p in model.parameters()),
           "modules": _trainable_modules(model), "notes": []}
    if not is_peft:
        return out
    peft_trainable, peft_total = model.get_nb_trainable_parameters()
    out.update(total=peft_total, peft_trainable=peft_trainable)
    if getattr(config, "is_prompt_learning", False):
        out["peft_targets"] = sum(out["modules"].values())
    else:
        out["modules"] = _peft_targets(model)
        inner = getattr(model, "base_model", model)
        out["peft_targets"] = (len(getattr(inner, "targeted_module_names", []))
                               + len(getattr(inner, "targeted_parameter_names", [])))
    out["matches_peft"] = peft_trainable == trainable and out["peft_targets"] == sum(out["modules"].values())
    experts = fused_expert_parameters(model)
    reached = [k for k in out["modules"] if "experts." in k]
    if experts and not reached and not getattr(config, "is_prompt_learning", False):
        out["notes"].append("the routed experts (fused tensors) are not adapted: "
                            + ("peft's DoRA cannot wrap them" if getattr(config, "use_dora", False)
                               else f"{config.peft_type.value} reaches only whole modules"))
    if reached and getattr(config, "target_parameters", None):
        out["notes"].append("lora_dropout is 0: peft's ParamWrapper (fused experts) has no dropout")
    return out


def describe_adapted(summary: dict) -> str:
    """One train.log line, e.g. 'Regime lora adapts 14 modules (self_attn.q_proj x2, ...):
    32,768 of 205,120 parameters train (peft counts the same)'."""
    mods = summary["modules"]
    listed = ", ".join(f"{k} x{v}" for k, v in sorted(mods.items()))
    line = (f"Regime {summary['regime']} adapts {sum(mods.values())} modules ({listed}): "
            f"{summary['trainable']:,} of {summary['total']:,} parameters train")
    if "matches_peft" in summary:
        line += (" (peft counts the same)" if summary["matches_peft"] else
                 f" (peft counts {summary['peft_trainable']:,} parameters in {summary['peft_targets']} targets)")
    return line + "".join(f"; {n}" for n in summary["notes"])
