"""Presets are data: presets/models/*.yaml (architectures) and presets/recipes/*.yaml
(whole runs or method x size hyperparameters), read into specs here."""
from __future__ import annotations

from pathlib import Path

from studio.spec import ModelSpec, RunSpec, read_yaml

ROOT = Path(__file__).resolve().parent.parent / "presets"


def list_presets(kind: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / kind).glob("*.yaml"))


def preset_path(kind: str, name: str) -> Path:
    path = ROOT / kind / f"{name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no {kind} preset '{name}'; known: {', '.join(list_presets(kind))}")
    return path


def load_model_preset(name: str) -> ModelSpec:
    path = preset_path("models", name)
    data = read_yaml(path.read_text(), str(path)) or {}
    return RunSpec.from_dict({"model": data.get("model", data)}).model


def load_run(spec_or_name: str) -> RunSpec:
    """A spec file path, or the name of a run recipe (e.g. 'quickstart')."""
    path = Path(spec_or_name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise FileNotFoundError(f"spec file '{spec_or_name}' does not exist")
        return RunSpec.load(path)
    return RunSpec.load(preset_path("recipes", spec_or_name))


def default_spec() -> RunSpec:
    """What the studio opens with: the quickstart recipe."""
    return load_run("quickstart")


def model_presets() -> list[dict]:
    """The presets of published models (presets/models/*.yaml with a `config` section):
    id (the preset name), title, hub_id (what picking one fills in model.name_or_path),
    params (the published count), model_type and config (config.json's architecture
    fields, which the estimate reads for that hub id until the model is in the local hub
    cache). The studio's own scratch architectures (llama-1b, tiny ...) are not listed."""
    out = []
    for name in list_presets("models"):
        path = ROOT / "models" / f"{name}.yaml"
        data = read_yaml(path.read_text(), str(path)) or {}
        if not isinstance(data.get("config"), dict):
            continue
        out.append({"id": name, "title": data.get("title", name), "hub_id": data["model"]["name_or_path"],
                    "params": data.get("published_parameters"), "model_type": data["config"].get("model_type"),
                    "config": data["config"]})
    return out


def preset_config(hub_id: str) -> dict | None:
    """The architecture config a model preset holds for `hub_id` (org/name; a revision
    is ignored: the presets describe the published main branch), else None."""
    repo = hub_id.strip().partition("@")[0]
    return next((dict(p["config"]) for p in model_presets() if p["hub_id"] == repo), None)
