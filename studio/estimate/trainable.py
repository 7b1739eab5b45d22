"""Which tensors train under each parameter regime (full, freeze, LoRA/DoRA/QLoRA,
prefix, prompt, IA3), matched against the inventory's names exactly as
studio.model.adapters and peft match them on the real model."""
from __future__ import annotations

import re

from studio.estimate.config import EstimateError
from studio.estimate.ia3 import IA3_FALLBACK, PEFT_IA3, ia3_modules
from studio.estimate.inventory import Inventory, as_inventory, numel
from studio.spec import comma_list

BLOCK_INDEX = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")
# model_type -> (IA3 targets, feed-forward ones): peft's defaults and the studio's
# fallbacks, from the one table studio.model.adapters also builds IA3 from.
IA3_TARGETS = {**PEFT_IA3, **IA3_FALLBACK}


def freeze_trains(name: str, n_layers: int, last_n: int, extra: str) -> bool:
    """The freeze regime's rule (studio.model.adapters applies the same function): a
    parameter trains when it sits in one of the last `last_n` blocks or its name holds
    one of the comma-separated fragments in `extra`."""
    match = BLOCK_INDEX.search(name)
    if match and int(match.group(1)) >= n_layers - last_n:
        return True
    return any(frag in name for frag in comma_list(extra))


def lora_targets(inv: Inventory, target_modules: str) -> list[tuple[str, int, int]]:
    """Linear (and embedding) modules peft's LoRA attaches to, matched like peft does:
    "all-linear" = every linear but the output head; names match whole or as a suffix."""
    if target_modules.strip().lower() == "all-linear":
        return [m for m in inv.linears if m[0] != inv.output_module]
    wanted = comma_list(target_modules)
    return [m for m in inv.linears + inv.embeddings if _matches(m[0], wanted)]


def _matches(name: str, targets) -> bool:
    """peft's rule: a target names the module whole or as a dotted suffix."""
    return any(name == t or name.endswith("." + t) for t in targets)


def ia3_targets(model_type: str) -> tuple[list[str], list[str]]:
    """The family's default IA3 targets before they are fitted to a model's names."""
    return IA3_TARGETS.get(model_type, IA3_TARGETS["llama"])


def regime_of(method_spec) -> str:
    """The parameter regime of a MethodSpec; no method section means full training."""
    return getattr(method_spec, "regime", "full") if method_spec is not None else "full"


def trainable_tensors(inv: Inventory, method_spec) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, is_adapter) of every tensor with requires_grad after apply_regime."""
    regime = regime_of(method_spec)
    info = inv.info
    if regime == "full":
        return [(n, s, False) for n, s, _ in inv.params]
    if regime == "freeze":
        return [(n, s, False) for n, s, _ in inv.params
                if freeze_trains(n, info["layers"], method_spec.freeze_trainable_layers,
                                 method_spec.freeze_extra_modules)]
    if regime in ("lora", "dora", "qlora"):
        r = method_spec.lora_r
        out = []
        embedding_names = {e[0] for e in inv.embeddings}
        for name, n_in, n_out in lora_targets(inv, method_spec.target_modules):
            if name in embedding_names:  # peft: lora_embedding_A (r, rows), B (dim, r)
                out += [(f"{name}.lora_embedding_A", (r, n_in), True), (f"{name}.lora_embedding_B", (n_out, r), True)]
                continue
            out += [(f"{name}.lora_A", (r, n_in), True), (f"{name}.lora_B", (n_out, r), True)]
            if regime == "dora":
                out.append((f"{name}.lora_magnitude_vector", (n_out,), True))
        return out
    if regime == "prefix":
        # peft sizes the prefix by the K/V width (GQA aware) when the config names kv heads.
        width = info["kv_heads"] * info["head_dim"] if inv.model_type != "gpt2" else info["hidden"]
        return [("prefix_encoder.embedding", (method_spec.num_virtual_tokens, info["layers"] * 2 * width), True)]
    if regime == "prompt":
        return [("prompt_encoder.embedding", (method_spec.num_virtual_tokens, info["hidden"]), True)]
    if regime == "ia3":
        # the same choice as the worker's (studio.model.adapters.ia3_targets_for), on the
        # inventory's module names: method.target_modules, else the family's fitted default
        targets, feedforward = ia3_modules(inv.model_type, [m[0] for m in inv.linears],
                                           getattr(method_spec, "target_modules", "all-linear"))
        return [(f"{name}.ia3_l", (1, n_in) if _matches(name, feedforward) else (n_out, 1), True)
                for name, n_in, n_out in inv.linears if _matches(name, targets)]
    raise EstimateError(f"method.regime: '{regime}' is not a parameter regime")


def trainable_parameters(model, method_spec=None, vocab_size: int | None = None) -> int:
    """Number of parameters with requires_grad after apply_regime(model, method_spec).
    `model`: an Inventory or what inventory() reads."""
    inv = as_inventory(model, vocab_size)
    return sum(numel(s) for _, s, _ in trainable_tensors(inv, method_spec))
