"""Models for the worker: build from a ModelSpec, load an existing one, apply the
parameter regime. Importing this package registers the studio's own architecture
(model_type "studio") with AutoConfig / AutoModelForCausalLM.

This package imports torch and transformers; the UI should ask studio.estimate
(architecture_of, count_parameters, ...) instead, which imports neither.
"""
from __future__ import annotations

from studio.estimate import architecture_of
from studio.model.adapted import adapted_summary
from studio.model.adapters import apply_regime, peft_config_for
from studio.model.build import build_model, config_for
from studio.model.custom import StudioConfig, StudioForCausalLM, register
from studio.model.load import build_or_load, load_tokenizer, resolve_model_path

register()

__all__ = [
    "StudioConfig", "StudioForCausalLM", "adapted_summary", "apply_regime", "architecture_of", "build_model",
    "build_or_load", "config_for", "load_tokenizer", "peft_config_for", "resolve_model_path",
]
