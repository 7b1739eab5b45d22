"""Libraries a training process can do without, hidden before anything imports them.

transformers, trl and accelerate import peft and bitsandbytes whenever they are
installed, to offer adapters and 4/8-bit layers: ~0.7 s for peft and ~1 s for
bitsandbytes (it torch.compiles its CPU kernels at import) of the ~7 s a small job
spends starting up. A run that trains full or frozen weights of one plain model never
calls peft, and one that quantizes nothing and uses no 8-bit optimizer never calls
bitsandbytes, so the worker hides them for such runs. Only the worker does this, once,
before importing torch (never the UI or the tests' own process), and only when the spec
names no model that could be an adapter or stored quantized.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from studio.spec import RunSpec

ADAPTER_FREE_REGIMES = ("full", "freeze")
EIGHT_BIT_OPTIMIZERS = ("adamw_8bit", "galore_adamw")  # galore_torch imports bitsandbytes too


def _plain_local_model(name_or_path: str) -> bool:
    """A full model folder (no adapter) whose config stores no quantization. Hub ids are
    not read here (no network in the worker's first second): those keep both libraries."""
    folder = Path(name_or_path)
    if not (folder / "config.json").is_file() or (folder / "adapter_config.json").exists():
        return False
    try:
        return "quantization_config" not in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False


def unneeded(spec: RunSpec) -> tuple[str, ...]:
    """The libraries this run will never call."""
    m, model = spec.method, spec.model
    # other models a method loads (teacher, reference, reward model) are not inspected
    if m.name in ("distill", "grpo", "ppo") or m.reference_model.strip():
        return ()
    if model.source != "scratch" and not _plain_local_model(model.name_or_path):
        return ()
    names = []
    if m.regime in ADAPTER_FREE_REGIMES:
        names.append("peft")
    if m.regime != "qlora" and spec.train.optimizer not in EIGHT_BIT_OPTIMIZERS:
        names.append("bitsandbytes")
    return tuple(names)


def hide(*names: str) -> None:
    """Make each module look not installed: with None in sys.modules, `import NAME` raises
    ModuleNotFoundError and importlib.util.find_spec(NAME) returns None, which is how
    peft and transformers ask whether it is there."""
    for name in names:
        if name not in sys.modules:  # already imported: too late to hide
            sys.modules[name] = None


def for_run(spec: RunSpec) -> tuple[str, ...]:
    names = unneeded(spec)
    hide(*names)
    return names
