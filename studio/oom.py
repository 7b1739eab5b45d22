"""Out-of-memory advice: what the run held at its peak and settings that would fit,
computed with the same estimator as the Model tab."""
from __future__ import annotations

import copy

from studio.spec import RunSpec
from studio.units import gib


def candidates(spec: RunSpec) -> list[tuple[str, RunSpec]]:
    """Cheaper variants of the spec, each with a one-line description."""
    out = []
    t = spec.train
    if t.batch_size > 1:
        s = copy.deepcopy(spec)
        s.train.batch_size = max(1, t.batch_size // 2)
        s.train.grad_accum = t.grad_accum * (t.batch_size // s.train.batch_size)
        out.append((f"train.batch_size={s.train.batch_size} with train.grad_accum={s.train.grad_accum} "
                    "(same effective batch)", s))
    if t.gradient_checkpointing != "on" and spec.method.regime != "prefix":
        s = copy.deepcopy(spec)
        s.train.gradient_checkpointing = "on"
        out.append(("train.gradient_checkpointing=on (recompute activations, ~30% slower)", s))
    if spec.method.regime in ("full", "freeze"):
        s = copy.deepcopy(spec)
        s.method.regime = "lora"
        out.append(("method.regime=lora (train adapters only)", s))
    if spec.method.regime != "qlora":
        s = copy.deepcopy(spec)
        s.method.regime = "qlora"
        out.append(("method.regime=qlora (4-bit base + LoRA)", s))
    if spec.model.max_seq_len > 256:
        s = copy.deepcopy(spec)
        s.model.max_seq_len = spec.model.max_seq_len // 2
        out.append((f"model.max_seq_len={s.model.max_seq_len} (shorter sequences)", s))
    return out


def advice(spec: RunSpec, peak_bytes: int, device: str, device_memory_bytes: int | None = None) -> str:
    lines = [f"Out of memory on {device} (peak {gib(peak_bytes)} in use)."]
    try:
        from studio.estimate import estimate_memory
    except ImportError:
        estimate_memory = None
    if estimate_memory is not None:
        try:
            need = estimate_memory(spec.model, spec.method, spec.train)["total"]
            lines.append(f"The estimate for this spec is {gib(need)}.")
        except Exception:  # noqa: BLE001 - advice must never hide the OOM itself
            estimate_memory = None
    lines.append("Settings that need less memory:")
    for text, variant in candidates(spec):
        figure = ""
        if estimate_memory is not None:
            try:
                figure = f" -> about {gib(estimate_memory(variant.model, variant.method, variant.train)['total'])}"
            except Exception:  # noqa: BLE001
                figure = ""
        lines.append(f"- {text}{figure}")
    return "\n".join(lines)
