"""Reading what a model is: its config.json (local folders, run directories, the hub
cache; never a download), the config a scratch ModelSpec builds, and which
architecture that is. Everything downstream works on the config dict."""
from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PRESET_DIR = REPO_ROOT / "presets" / "models"
DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}


class EstimateError(ValueError):
    """Input the estimator cannot read; the message names the field and the fix."""


# -- which architecture a spec becomes -------------------------------------------


def architecture_of(model_spec) -> str:
    """"llama" | "mistral" | "studio" for a scratch spec; a pretrained spec gives the
    model_type of its config.json when that can be read locally."""
    if getattr(model_spec, "source", "scratch") == "pretrained":
        try:
            return read_config(model_spec.name_or_path).get("model_type", "pretrained")
        except EstimateError:
            return "pretrained"
    standard = (model_spec.positional_encoding in ("rope", "yarn") and model_spec.norm == "rmsnorm"
                and model_spec.activation == "swiglu")
    if not standard:
        return "studio"
    if model_spec.sliding_window is None:
        return "llama"
    # Mistral has no attention biases; with them the studio's model keeps both options.
    return "studio" if model_spec.attention_bias else "mistral"


def spec_config(model_spec, vocab_size: int | None = None) -> dict:
    """The config dict (transformers field names, with model_type) a scratch spec builds.
    studio.model.build turns it into the PretrainedConfig, so both read the same numbers."""
    m = model_spec
    arch = architecture_of(m)
    vocab = m.vocab_size or vocab_size or tokenizer_vocab_size(m.tokenizer)
    kv = {"mha": m.n_heads, "mqa": 1}.get(m.attention, m.n_kv_heads)
    max_pos = m.max_seq_len
    rope = {"rope_type": "default", "rope_theta": float(m.rope_theta)}
    if m.positional_encoding == "yarn":
        factor = float(m.yarn_factor or 1.0)
        rope = {"rope_type": "yarn", "rope_theta": float(m.rope_theta), "factor": factor,
                "original_max_position_embeddings": m.max_seq_len}
        max_pos = int(round(m.max_seq_len * factor))
    cfg = {
        "model_type": arch, "vocab_size": int(vocab), "hidden_size": m.d_model,
        "intermediate_size": m.d_ff, "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads, "num_key_value_heads": kv,
        "head_dim": m.d_model // m.n_heads, "max_position_embeddings": max_pos,
        "tie_word_embeddings": m.tie_embeddings, "rope_parameters": rope,
    }
    if arch in ("llama", "mistral"):
        cfg.update(hidden_act="silu", rms_norm_eps=m.norm_eps, attention_dropout=m.dropout)
        if arch == "llama":
            cfg.update(attention_bias=m.attention_bias, mlp_bias=False)
        else:
            cfg.update(sliding_window=m.sliding_window)
    else:
        cfg.update(hidden_act=m.activation, norm_type=m.norm, norm_eps=m.norm_eps,
                   position_embedding=m.positional_encoding, sliding_window=m.sliding_window,
                   attention_bias=m.attention_bias, dropout=m.dropout)
    return cfg


def tokenizer_vocab_size(path: str) -> int:
    """len(tokenizer) read from tokenizer.json (base vocab plus added tokens), no load."""
    folder = resolve_path(path)
    file = folder / "tokenizer.json" if folder is not None else None
    if file is None or not file.is_file():
        raise EstimateError(f"model.tokenizer: cannot read the vocabulary of '{path}' here; "
                            "set model.vocab_size, or give a tokenizer folder with tokenizer.json")
    data = json.loads(file.read_text())
    ids = set((data.get("model", {}).get("vocab") or {}).values())
    ids |= {t["id"] for t in data.get("added_tokens", [])}
    return len(ids)


def as_config(model, vocab_size: int | None = None) -> dict:
    """The config dict of `model`: a config dict (as is), a ModelSpec (its config.json when
    pretrained, else the config it builds) or a transformers PretrainedConfig."""
    if isinstance(model, dict):
        return model
    if hasattr(model, "positional_encoding"):  # a ModelSpec
        if model.source == "pretrained":
            from studio.estimate.rope import scaled_config

            return scaled_config(read_config(model.name_or_path), model)  # the context it trains at
        return spec_config(model, vocab_size)
    if hasattr(model, "to_dict"):  # a transformers PretrainedConfig
        return model.to_dict()
    raise EstimateError(f"cannot estimate a {type(model).__name__}: give a ModelSpec or a config.json dict")


# -- reading sources ------------------------------------------------------------------


def resolve_path(path: str) -> Path | None:
    """`path` as given (~ expanded) or under the repository, when it exists."""
    if not path:
        return None
    for candidate in (Path(path).expanduser(), REPO_ROOT / path):
        if candidate.exists():
            return candidate
    return None


def read_config(name_or_path: str) -> dict:
    """config.json of a model folder, a run directory (its final/), an adapter folder (its
    base's), a config.json file, a hub id already in the local cache, or (not cached) the
    hub id of a model preset (presets/models). Never downloads."""
    if name_or_path.startswith("run:"):  # an earlier run in the runs folder (studio.runref)
        from studio import runref
        from studio.rundirs import JobError

        try:
            name_or_path = str(runref.find_run(name_or_path))
        except JobError as exc:
            raise EstimateError(str(exc)) from None
    found = resolve_path(name_or_path)
    if found is not None and found.is_file():
        return json.loads(found.read_text())
    if found is not None:
        for folder in (found, found / "final"):
            if (folder / "config.json").is_file():
                return json.loads((folder / "config.json").read_text())
            if (folder / "adapter_config.json").is_file():
                base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
                if base:
                    return read_config(base)
        raise EstimateError(f"model.name_or_path: no config.json in '{name_or_path}' (nor in its final/)")
    from studio.hub import cached_config, looks_like_id

    cached = cached_config(name_or_path) if looks_like_id(name_or_path) else None  # org/name[@revision]
    if cached is not None:
        return cached
    from studio.presets import preset_config

    preset = preset_config(name_or_path) if looks_like_id(name_or_path) else None  # presets/models: no download
    if preset is not None:
        return preset
    raise EstimateError(f"model.name_or_path: '{name_or_path}' is not a local folder and its config is not in "
                        "the local hub cache; download the model once (or its config.json alone: "
                        "studio.hub.fetch_config), or give a folder")
