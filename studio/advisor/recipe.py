"""The studio's one recipe system: spec fields for a method, regime and model size, from
the registry's defaults and presets/recipes/sizes.yaml (the advisor's "use this", the
Method tab, `studio advise`)."""
from __future__ import annotations

import copy
import functools
import math
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


def recipe(method: str, regime: str, bucket: str = "medium", sizes: dict | None = None,
           rows: int | None = None) -> dict:
    """"method.x"/"train.x"/"data.x" -> value: the registry's defaults, the phase's weight
    decay and warmup, the size table's batch/steps/learning rate for the method's phase,
    and the regime's adjustments (later wins). With the data's rows, the steps come from
    epochs (the table's `epochs` rules) instead of the table's max_steps."""
    return recipe_with_reasons(method, regime, bucket, sizes, rows)[0]


def recipe_with_reasons(method: str, regime: str, bucket: str = "medium", sizes: dict | None = None,
                        rows: int | None = None) -> tuple[dict, dict]:
    """(fields, reasons): recipe()'s fields and a one-line reason for the learning rate,
    rank, batch, accumulation, epochs and steps."""
    sizes = sizes or load_sizes()
    info = REGISTRY[method]
    phase_name = sizes["method_phase"][method]
    bucket_row = next(b for b in sizes["buckets"] if b["name"] == bucket)
    phase = bucket_row["phases"][phase_name]
    adjust = sizes["regimes"].get(regime, {})
    out = {"method.name": method, "method.regime": regime}
    # the registry's learning rates are size-agnostic; the size table's are not, so they win
    out.update({k: v for k, v in info.defaults.items() if k != "train.learning_rate"})
    for key in ("weight_decay", "warmup_steps"):  # a bucket's phase may override its phase's
        value = phase.get(key, sizes["phase_train"].get(phase_name, {}).get(key))
        if value is not None:
            out[f"train.{key}"] = value
    out.update(_batch_and_steps(method, phase_name, phase))
    why = {"train.batch_size": f"the size table's {phase_name} batch for {bucket_row['label']}"}
    why["train.grad_accum"] = why["train.batch_size"]
    why["train.max_steps"] = (f"the size table's {phase_name} steps (the data's rows are not known)"
                              if out["train.max_steps"] else "0: the epochs decide the length")
    out["train.learning_rate"] = _learning_rate(phase_name, phase, adjust, info.typical_lr)
    why["train.learning_rate"] = _lr_reason(phase_name, phase, adjust, bucket_row["label"], info.title)
    out.update(adjust.get("set", {}))
    if "method.lora_r" in out:
        why["method.lora_r"] = (f"r{out['method.lora_r']}/alpha{out['method.lora_alpha']}: the seed's "
                                f"{regime.upper() if regime != 'dora' else 'DoRA'} default")
    if rows is not None:
        _steps_from_rows(out, why, phase_name, rows, sizes)
        if "method.mini_batch_size" in out:  # PPO: its mini-batches split one step's rollouts
            out["method.mini_batch_size"] = min(out["method.mini_batch_size"], out["train.batch_size"])
    return out, why


def _lr_reason(phase_name: str, phase: dict, adjust: dict, label: str, title: str) -> str:
    if "fixed_learning_rate" in adjust:
        return "the regime's own rate: soft prompts and scaling vectors need a far larger step than weights"
    base = (f"the seed's {phase_name} rate for {label}" if "learning_rate" in phase
            else f"the {title} card's typical rate")
    if phase_name in ("base", "cpt", "sft") and adjust.get("learning_rate"):
        return f"{base}, raised to the adapter's floor ({adjust['learning_rate']:g}: low-rank updates need larger steps)"
    if adjust.get("lr_multiplier", 1) != 1:
        return f"{base} x {adjust['lr_multiplier']} (adapters train a small update: a larger step)"
    return base


def epochs_for(phase_name: str, rows: int, sizes: dict | None = None) -> tuple[float, str]:
    """(epochs, source) of the first rule of sizes.yaml's `epochs` that holds for `rows`."""
    sizes = sizes or load_sizes()
    for rule in sizes.get("epochs", {}).get(phase_name, []):
        if rule["up_to_rows"] is None or rows <= rule["up_to_rows"]:
            return rule["epochs"], rule["source"]
    return 1, "one pass (no rule for this phase)"


def effective_batch_for(table_batch: int, rows: int, sizes: dict | None = None) -> tuple[int, str]:
    """The effective batch (a power of two): the size table's, shrunk so one epoch keeps
    at least `min_steps_per_epoch` steps, and never more rows per step than the data has."""
    sizes = sizes or load_sizes()
    floor = sizes.get("min_steps_per_epoch", 8)
    cap = max(1, min(table_batch, rows // floor))
    eff = 1 << (cap.bit_length() - 1)
    if eff == table_batch:
        return eff, f"the size table's effective batch ({table_batch})"
    return eff, (f"{rows} rows: {eff} per step keeps at least {floor} steps an epoch "
                 f"(the table's {table_batch} would leave too few)")


def _steps_from_rows(out: dict, why: dict, phase_name: str, rows: int, sizes: dict) -> None:
    """max_steps = ceil(rows x epochs / effective batch), with the batch split into
    micro-batch x accumulation (the memory fit may shift that split, never the product)."""
    table = out["train.batch_size"] * out["train.grad_accum"]
    eff, eff_why = effective_batch_for(table, rows, sizes)
    micro = min(out["train.batch_size"], eff)
    out["train.batch_size"], out["train.grad_accum"] = micro, max(1, eff // micro)
    why["train.batch_size"] = why["train.grad_accum"] = f"effective batch {eff}: {eff_why}"
    epochs, source = epochs_for(phase_name, rows, sizes)
    out["train.epochs"] = epochs
    why["train.epochs"] = f"{epochs} for {rows} rows: {source}"
    out["train.max_steps"] = max(1, math.ceil(rows * epochs / eff))
    why["train.max_steps"] = f"ceil({rows} rows x {epochs} epochs / {eff} per step)"


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
