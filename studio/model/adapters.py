"""Parameter regimes: which weights train. full and freeze set requires_grad; the
adapter regimes wrap the model with peft. peft loads lazily (it costs seconds).

Targets follow the model's own family, not Llama's names: IA3 takes peft's per-family
defaults (TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING), LoRA's "all-linear" also
reaches the fused expert tensors of mixture-of-experts models (transformers 5 stores each
layer's experts as one 3-D parameter, which only peft's target_parameters can adapt), and
names that the model does not have are refused before training, with the names it has."""
from __future__ import annotations

from studio.estimate import freeze_trains
from studio.estimate.ia3 import IA3_FALLBACK, IA3_FFN_OUT, family_defaults, ia3_modules  # noqa: F401
from studio.model.adapted import adapted_summary, describe_adapted, fused_expert_parameters, linear_names
from studio.spec import comma_list

ADAPTER_REGIMES = ("lora", "dora", "qlora")
# method.lora_init -> peft's init_lora_weights: PiSSA (exact SVD of each target weight),
# OLoRA (a QR factor); both move the decomposed part out of the base weight
LORA_INIT = {"default": True, "pissa": "pissa", "olora": "olora"}


def _model_type(model) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", "llama") if config is not None else "llama"


def _has(names: set[str], target: str) -> bool:
    """peft's matching: a target names a module by its full name or a dotted suffix."""
    return any(n == target or n.endswith("." + target) for n in names)


def _requested(method_spec) -> list[str] | None:
    """The names of method.target_modules, or None for the default ('all-linear')."""
    raw = method_spec.target_modules.strip()
    if raw.lower() == "all-linear":
        return None
    names = comma_list(raw)
    if not names:
        raise ValueError("method.target_modules: give 'all-linear' or comma-separated module names, e.g. q_proj,v_proj")
    return names


def _unknown(names: list[str], model, experts: dict[str, int]) -> None:
    have = linear_names(model)
    missing = [n for n in names if not _has(have, n) and not any(k.endswith(n) for k in experts)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in have})
        raise ValueError(f"method.target_modules: {', '.join(missing)} not found in this {_model_type(model)} "
                         f"model; its linear layers are {', '.join(leaves)} (or use all-linear)")


def lora_targets(method_spec, model=None) -> dict:
    """LoraConfig fields for the targets: target_modules, and target_parameters for fused
    MoE experts (with lora_dropout 0, as peft's ParamWrapper has no dropout)."""
    names = _requested(method_spec)
    experts = fused_expert_parameters(model) if model is not None else {}
    if names is not None and model is not None:
        _unknown(names, model, experts)
    if not experts:
        return {"target_modules": names if names is not None else "all-linear"}
    # Explicit Linear names: peft's own MoE conversion of "all-linear" would add the experts
    # (and the router) itself, which DoRA cannot take.
    linear = sorted({n.rsplit(".", 1)[-1] for n in linear_names(model)})
    modules = [n for n in (names or linear) if _has(linear_names(model), n)]
    wanted = list(experts) if names is None else [k for k in experts if any(k.endswith(n) for n in names)]
    if method_spec.regime == "dora" or not wanted:
        return {"target_modules": modules}
    return {"target_modules": modules, "target_parameters": wanted, "lora_dropout": 0.0}


def ia3_targets_for(method_spec, model=None) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules) for IA3: method.target_modules when named,
    else peft's default for the family; both kept to the names the model has. The table
    and rule are studio.estimate.ia3's, which the estimate counts with too."""
    kind = _model_type(model)
    names = _requested(method_spec)
    if model is None:
        targets = names or family_defaults("llama")[0]
        return list(targets), [t for t in targets if t in IA3_FFN_OUT or t in family_defaults("llama")[1]]
    if names is not None:
        _unknown(names, model, {})
    targets, feedforward = ia3_modules(kind, linear_names(model), method_spec.target_modules)
    if not targets:
        raise ValueError(f"method.regime: ia3 found no attention or feed-forward layers it knows in this {kind} "
                         "model; name them in method.target_modules")
    return targets, feedforward


def _kv_heads(config) -> int | None:
    """K/V heads where the config does not call them num_key_value_heads (Falcon's
    multi-query attention keeps one); peft would size the prefix by all the heads."""
    if hasattr(config, "num_key_value_heads") or getattr(config, "model_type", "") != "falcon":
        return None
    if getattr(config, "new_decoder_architecture", False):
        return config.num_kv_heads
    return 1 if getattr(config, "multi_query", False) else None


def prefix_config(method_spec, model=None):
    from peft import PrefixTuningConfig, TaskType

    extra = {}
    config = getattr(model, "config", None)
    kv = _kv_heads(config) if config is not None else None
    if kv is not None:
        head_dim = config.hidden_size // config.num_attention_heads
        extra = dict(token_dim=kv * head_dim, num_attention_heads=kv)
    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=method_spec.num_virtual_tokens, **extra)


def peft_config_for(method_spec, model=None):
    """The peft config for the regime (for trainers that take peft_config=), or None for
    full / freeze. With the model, targets are checked against it and fitted to its family."""
    regime = method_spec.regime
    if regime in ("full", "freeze"):
        return None
    from peft import IA3Config, LoraConfig, PromptTuningConfig, TaskType

    if regime in ADAPTER_REGIMES:
        fields = {"lora_dropout": method_spec.lora_dropout, **lora_targets(method_spec, model)}
        init = getattr(method_spec, "lora_init", "default")
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=method_spec.lora_r, lora_alpha=method_spec.lora_alpha,
                          use_dora=regime == "dora", use_rslora=bool(getattr(method_spec, "use_rslora", False)),
                          init_lora_weights=LORA_INIT[init], **fields)
    if regime == "prefix":
        return prefix_config(method_spec, model)
    if regime == "prompt":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=method_spec.num_virtual_tokens)
    if regime == "ia3":
        targets, feedforward = ia3_targets_for(method_spec, model)
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets, feedforward_modules=feedforward)
    raise ValueError(f"method.regime: '{regime}' is not one of full, freeze, lora, dora, qlora, prefix, prompt, ia3")


def _fit_model_to_regime(model, regime: str) -> None:
    """Prefix tuning prepends virtual tokens to the attention mask only; a mixture-of-experts
    model's router loss then pairs that longer mask with the real tokens' router logits (a
    size mismatch). The router is frozen under prefix tuning, so its balancing loss has
    nothing to train: it is switched off."""
    config = getattr(model, "config", None)
    if regime == "prefix" and getattr(config, "output_router_logits", False):
        config.output_router_logits = False
        # trl turns the loss back on from the coefficient (router_aux_loss_coef) unless it is 0
        config.router_aux_loss_coef = 0.0
        print("Regime prefix: the router's auxiliary loss is off (the router is frozen, and "
              "peft's prefix mask does not fit it)", flush=True)


def fit_base_to_adapter(base, adapter_dir) -> None:
    """The same fitting for a saved adapter loaded over its base (chat, export, a next run)."""
    import json
    from pathlib import Path

    peft_type = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("peft_type", "")
    _fit_model_to_regime(base, "prefix" if peft_type == "PREFIX_TUNING" else peft_type.lower())


def apply_regime(model, method_spec, model_spec=None):
    """Make exactly the regime's parameters trainable; adapter regimes return a PeftModel.
    A model that already carries a peft adapter (a previous run's) keeps training it.
    What it adapts (adapted_summary) is printed for train.log."""
    regime = method_spec.regime if method_spec is not None else "full"
    model = _apply(model, method_spec, regime)
    print(describe_adapted(adapted_summary(model, regime)), flush=True)
    return model


def _apply(model, method_spec, regime: str):
    if regime == "full":
        return model
    if regime == "freeze":
        n_layers = model.config.get_text_config().num_hidden_layers
        for name, param in model.named_parameters():
            param.requires_grad_(freeze_trains(name, n_layers, method_spec.freeze_trainable_layers,
                                               method_spec.freeze_extra_modules))
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("method.freeze_trainable_layers: nothing would train; use at least 1 "
                             "or name modules in freeze_extra_modules")
        return model
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if isinstance(model, PeftModel):
        return model
    config = peft_config_for(method_spec, model)
    if regime == "qlora":
        bits = getattr(method_spec, "quant_bits", 4)
        if not getattr(model, f"is_loaded_in_{bits}bit", False):
            raise ValueError(f"method.regime: qlora needs the model loaded in {bits} bits "
                             "(studio.model.build_or_load with this method spec)")
        # Checkpointing is the trainer's choice (train.gradient_checkpointing), not peft's.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    _fit_model_to_regime(model, regime)
    model = get_peft_model(model, config)
    if getattr(config, "init_lora_weights", True) in ("pissa", "olora"):
        _keep_initial_adapter(model)
    return model


def _keep_initial_adapter(model) -> None:
    """PiSSA/OLoRA change the base weights they decompose, so an adapter saved as is only
    fits that changed base. The adapter as initialised is kept (a temporary folder) so the
    final save converts the trained one into a plain LoRA over the original base
    (peft's path_initial_model_for_weight_conversion; its rank doubles)."""
    import tempfile

    config = model.peft_config["default"]
    init, config.init_lora_weights = config.init_lora_weights, True  # reloading it must not re-decompose
    folder = tempfile.mkdtemp(prefix="studio-lora-init-")
    model.save_pretrained(folder, safe_serialization=True)
    config.init_lora_weights = init
    model.studio_initial_adapter = folder


def adapter_save_kwargs(model) -> dict:
    """save_pretrained keywords for final/: PiSSA/OLoRA adapters converted to plain LoRA."""
    folder = getattr(model, "studio_initial_adapter", None)
    return {"path_initial_model_for_weight_conversion": folder} if folder else {}
