"""One call for the UI and the CLI: everything the Model tab shows for a RunSpec, and
the same for any source the CLI names (a spec, a preset, a config, a model folder, a
run directory or a cached hub id), with the spec validated first."""
from __future__ import annotations

import yaml

from studio.estimate.config import PRESET_DIR, EstimateError, architecture_of, read_config, resolve_path
from studio.estimate.flops import flops_per_token
from studio.estimate.inventory import Inventory, count_parameters, inventory
from studio.estimate.memory import estimate_memory
from studio.estimate.trainable import trainable_parameters
from studio.spec import RunSpec, validate_method, validate_model, validate_train

# the method fields the estimate reads; the rest of the method (and data) is not its business
METHOD_FIELDS_READ = ("regime", "lora_r", "lora_dropout", "num_virtual_tokens", "freeze_trainable_layers",
                      "quant_bits")


def _report(inv: Inventory, model_part, method_spec, train_spec, device_memory_gb=None, **overrides) -> dict:
    counts = count_parameters(inv)
    memory = estimate_memory(inv if model_part is None else model_part, method_spec, train_spec,
                             device_memory_gb, **overrides)
    return {
        "architecture": architecture_of(model_part) if model_part is not None else inv.model_type,
        "model_type": inv.model_type,
        "parameters": counts["total"], "trainable_parameters": trainable_parameters(inv, method_spec),
        "embedding_parameters": counts["embedding"], "non_embedding_parameters": counts["non_embedding"],
        "components": counts["components"],
        "memory_bytes": {k: memory[k] for k in ("weights", "gradients", "optimizer", "activations", "total")},
        "kv_cache_bytes": memory["kv_cache"], "settings": memory["settings"],
        "flops_per_token": flops_per_token(inv, memory["settings"]["seq_len"], method_spec),
        # the context the model is trained for: with model.rope_scaling, the scaled one
        "context_tokens": inv.info.get("max_position"),
        **{k: memory[k] for k in ("device_memory_bytes", "fits", "headroom_bytes") if k in memory},
    }


def estimate(spec, device_memory_gb: float | None = None, **overrides) -> dict:
    """Everything the Model tab shows for a RunSpec: architecture, parameters (total,
    trainable, per component), the memory breakdown, KV cache, FLOPs per token.
    overrides: estimate_memory's keywords (seq_len, batch_size, dtype, ...)."""
    return _report(inventory(spec.model), spec.model, spec.method, spec.train, device_memory_gb, **overrides)


def load_source(source: str):
    """(RunSpec, config dict or None, from_run) for: a RunSpec/preset YAML path, a
    config.json path, a model folder, a run directory (its spec.yaml and final/), a preset
    name (presets/models/<name>.yaml) or a hub id in the local cache. Only configs are
    read, never weights."""
    path = resolve_path(source)
    preset = PRESET_DIR / f"{source}.yaml"
    if path is None and preset.is_file():
        path = preset
    if path is not None and path.is_file() and path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text()) or {}
        if path.resolve().parent == PRESET_DIR.resolve():  # a model preset: its model section is the spec
            data = {"model": data.get("model", data)}
        return RunSpec.from_dict(data), None, False
    if path is not None and path.is_dir() and (path / "spec.yaml").is_file():
        spec = RunSpec.load(path / "spec.yaml")
        try:
            return spec, read_config(str(path)), True  # the trained model, when final/ is there
        except EstimateError:
            return spec, None, True
    return RunSpec(), read_config(source), False


def spec_problems(spec) -> list[str]:
    """The spec's validation problems in the sections an estimate reads: the model, the
    training settings and the method's parameter regime (a model preset has no data)."""
    method = [p for p in validate_method(spec.method, spec.model)
              if p.field.split(".", 1)[1] in METHOD_FIELDS_READ]
    return [str(p) for p in validate_model(spec.model) + method + validate_train(spec.train)]


def estimate_from_source(source: str, *, method: str | None = None, regime: str | None = None,
                         batch_size: int | None = None, seq_len: int | None = None,
                         optimizer: str | None = None, dtype: str | None = None,
                         device_memory_gb: float | None = None, gradient_checkpointing: bool | None = None) -> dict:
    """estimate() for anything load_source reads, with the CLI's overrides; a spec with
    problems (after the overrides) is refused with its validation messages."""
    spec, config, from_run = load_source(source)
    if method:
        spec.method.name = method
    if regime:
        spec.method.regime = regime
    if optimizer:
        spec.train.optimizer = optimizer
    if batch_size:
        spec.train.batch_size = batch_size
    problems = spec_problems(spec)
    if problems:
        raise EstimateError(f"the spec read from '{source}' has problems:\n" + "\n".join(f"- {p}" for p in problems))
    overrides = dict(seq_len=seq_len, dtype=dtype, gradient_checkpointing=gradient_checkpointing)
    if config is None:
        return estimate(spec, device_memory_gb, **overrides)
    if seq_len is None and from_run:
        overrides["seq_len"] = spec.model.max_seq_len  # the length that run trained with
    return _report(inventory(config), None, spec.method, spec.train, device_memory_gb, **overrides)
