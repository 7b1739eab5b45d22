"""The studio's one recipe system: spec fields for a method, regime and model size, from
the registry's defaults and presets/recipes/sizes.yaml (the advisor's "use this", the
Method tab, `studio advise`)."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from studio.methods import REGISTRY
from studio.spec import RunSpec, SpecError, set_path

SIZES_FILE = Path(__file__).resolve().parent.parent.parent / "presets" / "recipes" / "sizes.yaml"


def load_sizes(path: str | Path = SIZES_FILE) -> dict:
    """presets/recipes/sizes.yaml, parsed (a fresh copy: callers may change it)."""
    path = Path(path)
    return copy.deepcopy(_parsed_sizes(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _parsed_sizes(path: str, mtime_ns: int) -> dict:
    # parsed once per version of the file: the UI asks on every answer, and PyYAML is slow
    data = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for key in ("buckets", "method_phase", "phase_train", "regimes"):
        if key not in (data or {}):
            raise SpecError(f"{path}: {key}", "missing section; see the comments at the top of the file")
    return data


def size_bucket(params: int | None, from_scratch: bool | None = None, sizes: dict | None = None) -> str:
    """The bucket of presets/recipes/sizes.yaml a model falls in; unknown sizes take the
    studio's tiny class for a new model and the ~1B class for an existing one."""
    sizes = sizes or load_sizes()
    if params is None:
        return "tiny" if from_scratch else "medium"
    for bucket in sizes["buckets"]:
        if bucket["up_to_params"] is None or params <= bucket["up_to_params"]:
            return bucket["name"]
    return sizes["buckets"][-1]["name"]


def recipe(method: str, regime: str, bucket: str = "medium", sizes: dict | None = None) -> dict:
    """"method.x"/"train.x"/"data.x" -> value: the registry's defaults, the phase's weight
    decay and warmup, the size table's batch/steps/learning rate for the method's phase,
    and the regime's adjustments (later wins)."""
    sizes = sizes or load_sizes()
    info = REGISTRY[method]
    phase_name = sizes["method_phase"][method]
    phase = next(b for b in sizes["buckets"] if b["name"] == bucket)["phases"][phase_name]
    adjust = sizes["regimes"].get(regime, {})
    out = {"method.name": method, "method.regime": regime}
    # the registry's learning rates are size-agnostic; the size table's are not, so they win
    out.update({k: v for k, v in info.defaults.items() if k != "train.learning_rate"})
    for key in ("weight_decay", "warmup_steps"):  # a bucket's phase may override its phase's
        value = phase.get(key, sizes["phase_train"].get(phase_name, {}).get(key))
        if value is not None:
            out[f"train.{key}"] = value
    out.update(_batch_and_steps(method, phase_name, phase))
    out["train.learning_rate"] = _learning_rate(phase_name, phase, adjust, info.typical_lr)
    out.update(adjust.get("set", {}))
    return out


def _learning_rate(phase_name: str, phase: dict, adjust: dict, typical_lr: float) -> float:
    lr = phase.get("learning_rate", typical_lr)
    if "fixed_learning_rate" in adjust:
        lr = adjust["fixed_learning_rate"]
    elif phase_name in ("base", "cpt", "sft"):
        lr = max(lr, adjust.get("learning_rate", lr))
    else:
        lr = lr * adjust.get("lr_multiplier", 1)
    return float(f"{lr:.3g}")


def _batch_and_steps(method: str, phase_name: str, phase: dict) -> dict:
    out = {}
    if phase_name == "rlhf":
        mini = phase["mini_batch_size"]
        if method == "ppo":  # rollouts per step, split into PPO mini-batches
            out.update({"train.batch_size": phase["batch_size"], "train.grad_accum": 1, "method.mini_batch_size": mini})
        else:  # GRPO: the same effective batch as accumulated mini-batches
            out.update({"train.batch_size": mini, "train.grad_accum": max(1, phase["batch_size"] // mini)})
    else:
        out.update({"train.batch_size": phase["batch_size"], "train.grad_accum": phase["grad_accum"]})
    out["train.max_steps"] = phase.get("max_steps", 0)
    if "epochs" in phase:
        out["train.epochs"] = phase["epochs"]
    return out


def apply_recipe(spec: RunSpec, fields: dict) -> RunSpec:
    """A new spec with the recipe's fields set (the Method tab's "use this")."""
    data = spec.to_dict()
    for key, value in fields.items():
        set_path(data, key, value)
    return RunSpec.from_dict(data)
