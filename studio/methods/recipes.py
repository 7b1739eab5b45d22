"""Per-method defaults and per-size recipes, read from presets/recipes/methods/<method>.yaml.

They live one folder below presets/recipes/ because every file directly in that folder
is a whole runnable spec (tests/test_spec.py loads each one); these are partial: spec
paths -> values. No torch here: the Method tab applies a recipe as the person picks.

Order of application (later wins): the registry's Method.defaults, the file's
`defaults`, the size class the model's parameter count falls in, the regime's entry.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from studio.spec import RunSpec, set_path

RECIPES_DIR = Path(__file__).resolve().parent.parent.parent / "presets" / "recipes" / "methods"


def recipe_file(method: str) -> dict:
    path = RECIPES_DIR / f"{method}.yaml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def size_class(method: str, n_params: float | None) -> dict:
    """The `sizes` entry whose max_params is the first at or above n_params ({} when the
    file has none or the size is unknown)."""
    if n_params is None:
        return {}
    for entry in recipe_file(method).get("sizes", []):
        bound = entry.get("max_params")
        if bound is None or n_params <= float(bound):
            return entry
    return {}


def recipe(method: str, regime: str = "full", n_params: float | None = None) -> dict:
    """Spec path -> value for this method, regime and model size."""
    from studio.methods import REGISTRY

    data = recipe_file(method)
    out = dict(REGISTRY[method].defaults) if method in REGISTRY else {}
    out.update(data.get("defaults") or {})
    out.update({k: v for k, v in size_class(method, n_params).items() if "." in k})
    out.update((data.get("regimes") or {}).get(regime) or {})
    return out


def apply_recipe(spec: RunSpec, n_params: float | None = None) -> RunSpec:
    """A copy of the spec with its method's recipe applied (overridable afterwards)."""
    data = spec.to_dict()
    for key, value in recipe(spec.method.name, spec.method.regime, n_params).items():
        set_path(data, key, value)
    return RunSpec.from_dict(data)
