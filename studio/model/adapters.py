"""Parameter regimes: which weights train. full and freeze set requires_grad; the
adapter regimes wrap the model with peft. peft loads lazily (it costs seconds)."""
from __future__ import annotations

from studio.estimate import freeze_trains, ia3_targets
from studio.spec import comma_list

ADAPTER_REGIMES = ("lora", "dora", "qlora")


def _targets(method_spec):
    raw = method_spec.target_modules.strip()
    if raw.lower() == "all-linear":
        return "all-linear"
    names = comma_list(raw)
    if not names:
        raise ValueError("method.target_modules: give 'all-linear' or comma-separated module names, e.g. q_proj,v_proj")
    return names


def _model_type(model) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", "llama") if config is not None else "llama"


def peft_config_for(method_spec, model=None):
    """The peft config for the regime (for trainers that take peft_config=), or None for
    full / freeze."""
    regime = method_spec.regime
    if regime in ("full", "freeze"):
        return None
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    if regime in ADAPTER_REGIMES:
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=method_spec.lora_r, lora_alpha=method_spec.lora_alpha,
                          lora_dropout=method_spec.lora_dropout, target_modules=_targets(method_spec),
                          use_dora=regime == "dora")
    if regime == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=method_spec.num_virtual_tokens)
    if regime == "prompt":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=method_spec.num_virtual_tokens)
    if regime == "ia3":
        targets, feedforward = ia3_targets(_model_type(model) if model is not None else "llama")
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets, feedforward_modules=feedforward)
    raise ValueError(f"method.regime: '{regime}' is not one of full, freeze, lora, dora, qlora, prefix, prompt, ia3")


def apply_regime(model, method_spec, model_spec=None):
    """Make exactly the regime's parameters trainable; adapter regimes return a PeftModel.
    A model that already carries a peft adapter (a previous run's) keeps training it."""
    regime = method_spec.regime if method_spec is not None else "full"
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
        if not getattr(model, "is_loaded_in_4bit", False):
            raise ValueError("method.regime: qlora needs the model loaded in 4 bits "
                             "(studio.model.build_or_load with this method spec)")
        # Checkpointing is the trainer's choice (train.gradient_checkpointing), not peft's.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, config)
