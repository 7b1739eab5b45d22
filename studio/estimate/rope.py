"""Rope scaling for an existing model trained past its native context (#25.7): the spec's
model.rope_scaling (linear | dynamic | yarn | llama3), model.rope_factor and
model.rope_original_context, turned into the rope_parameters transformers reads. One
function gives the scaled config dict; the worker sets the same fields on the loaded
config (studio.model.load) and the estimate reads that dict, so both see one context.

Pure dict work, no torch: validation and the Model tab call it."""
from __future__ import annotations

ROPE_SCALINGS = ("linear", "dynamic", "yarn", "llama3")
# Families whose position information is not rotary (learned positions, ALiBi), and the
# studio's own architecture (its scratch yarn is model.positional_encoding: yarn).
NOT_ROTARY = ("gpt2", "bloom", "opt", "gpt_bigcode", "mpt", "studio")
# Llama 3.1's published values: frequencies with wavelengths under context/4 unscaled,
# over context/1 divided by the factor, interpolated between.
LLAMA3_FREQ = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}


def rotary(config: dict) -> bool:
    kind = config.get("model_type", "")
    if kind == "falcon":
        return not config.get("alibi", False)
    return kind not in NOT_ROTARY


def family_problem(config: dict, kind: str) -> str | None:
    """Why `kind` cannot scale this model's positions, or None."""
    if not rotary(config):
        return (f"{kind} scales rotary position embeddings and this {config.get('model_type')} model has none "
                "(learned or ALiBi positions); leave model.rope_scaling empty")
    return None


def _theta(config: dict, params: dict) -> float:
    return float(params.get("rope_theta") or config.get("rope_theta") or config.get("rotary_emb_base") or 10000.0)


def rope_parameters(config: dict, kind: str, factor: float, original: int | None = None) -> tuple[dict, int]:
    """(rope_parameters, max_position_embeddings) for scaling `config`'s rotary embedding by
    `factor` from its native context (`original`, else its max_position_embeddings). A
    config whose rope parameters are per layer type (Gemma 3) scales its global-attention
    layers only: the sliding-window ones never see past their window."""
    native = int(original or config.get("max_position_embeddings") or 0)
    current = config.get("rope_parameters") or config.get("rope_scaling") or {}

    def one(params: dict) -> dict:
        out = {"rope_type": kind, "factor": float(factor), "rope_theta": _theta(config, params)}
        if "partial_rotary_factor" in params:
            out["partial_rotary_factor"] = params["partial_rotary_factor"]
        if kind in ("yarn", "llama3"):
            out["original_max_position_embeddings"] = native
        if kind == "llama3":
            out.update(LLAMA3_FREQ)
        return out

    layer_types = set(config.get("layer_types") or ())
    if isinstance(current, dict) and current and set(current) <= layer_types:
        params = {k: (one(v or {}) if k == "full_attention" else v) for k, v in current.items()}
    else:
        params = one(current if isinstance(current, dict) else {})
    return params, int(round(native * float(factor)))


def scaled_config(config: dict, model_spec) -> dict:
    """`config` with model_spec's rope scaling applied (as is when it asks for none)."""
    kind = getattr(model_spec, "rope_scaling", None)
    if not kind:
        return config
    params, context = rope_parameters(config, kind, model_spec.rope_factor, model_spec.rope_original_context)
    out = {k: v for k, v in config.items() if k != "rope_scaling"}
    out.update(rope_parameters=params, max_position_embeddings=context)
    return out


def context_of(config: dict) -> int | None:
    """The context a config is trained for (max_position_embeddings, or GPT-2's n_positions)."""
    return config.get("max_position_embeddings") or config.get("n_positions")
