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
