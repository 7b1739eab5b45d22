"""What the worker hands a method's train(ctx): the spec, where to write, and the hooks
that keep the run directory (metrics.jsonl, status.json) current.

Methods built on a transformers/trl Trainer pass `ctx.callbacks` to it; hand-written
loops (PPO, parts of distillation) call `ctx.log(...)` and `ctx.progress(...)` themselves
and poll `ctx.should_stop()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from studio.spec import RunSpec


@dataclass
class TrainContext:
    spec: RunSpec
    run_dir: Path
    device: str = "cpu"  # "cpu" | "cuda" | "mps"
    precision: str = "fp32"  # resolved from spec.train.precision and the device: fp32 | bf16 | fp16
    callbacks: list = field(default_factory=list)  # transformers.TrainerCallback instances
    log: Callable[[dict], None] = lambda record: None  # one metrics record (must hold "step")
    progress: Callable[[int, int], None] = lambda step, total: None
    should_stop: Callable[[], bool] = lambda: False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return self.run_dir / "final"
