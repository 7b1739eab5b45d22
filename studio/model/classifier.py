"""A one-score head for causal families that transformers gives no
ForSequenceClassification class (Granite, Cohere, OLMoE, ... : 103 of 189 causal model
types in transformers 5.23), so a reward model trains on every family.

The head is transformers' own generic one (GenericForSequenceClassification: the family's
trunk from AutoModel, a bias-free linear `score` reading the last non-pad token), the
same value head every built-in classifier such as LlamaForSequenceClassification uses.
Reusing it rather than PPO's ValueHead keeps the reward run's contract whole: trl's
RewardTrainer, peft's SEQ_CLS adapters (which save `score`), save_pretrained and
AutoModelForSequenceClassification.from_pretrained all work unchanged. The class is built
and registered for the config's class on demand, before loading."""
from __future__ import annotations


def _pretrained_base(causal_cls):
    """The family's XPreTrainedModel (weights init, base_model_prefix, attention support)."""
    from transformers import PreTrainedModel

    for base in causal_cls.__mro__[1:]:
        if issubclass(base, PreTrainedModel) and base.__name__.endswith("PreTrainedModel"):
            return base
    return None


def ensure_sequence_classifier(where_or_config, trust_remote_code: bool = False) -> str | None:
    """Register a sequence classifier for this config's family when transformers has
    none; returns the new class's name (None when one existed or none can be made: then
    AutoModelForSequenceClassification raises its own error)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.modeling_layers import GenericForSequenceClassification

    config = where_or_config
    if isinstance(where_or_config, str):
        config = AutoConfig.from_pretrained(where_or_config, trust_remote_code=trust_remote_code)
    kind = type(config)
    if kind in AutoModelForSequenceClassification._model_mapping:
        return None
    if kind not in AutoModelForCausalLM._model_mapping or kind not in AutoModel._model_mapping:
        return None
    base = _pretrained_base(AutoModelForCausalLM._model_mapping[kind])
    if base is None or getattr(base, "base_model_prefix", "") != "model":
        return None  # the generic head reads the trunk from .model
    name = base.__name__.replace("PreTrainedModel", "ForSequenceClassification")
    cls = type(name, (GenericForSequenceClassification, base), {"__module__": __name__})
    globals()[name] = cls  # importable by name, as transformers' own classes are
    AutoModelForSequenceClassification.register(kind, cls, exist_ok=True)
    return name
