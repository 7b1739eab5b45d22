"""Everything that can be refused before an evaluation starts: the spec's fields, each
model reference (a run without final/, a folder of pickles, nothing at that path), each
task's data (the columns its kind reads), lm-eval's task names. No model is loaded."""
from __future__ import annotations

from dataclasses import dataclass, field

from studio.evaluate.spec import EvalSpec


@dataclass
class Plan:
    refs: list = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    data: list = field(default_factory=list)  # TaskData per task
    total: int = 0  # examples x models, for the progress bar
    lm_results: dict = field(default_factory=dict)  # (model, task) -> lm-eval's own metrics with stderr

    @property
    def notes(self) -> list[str]:
        return [n for d in self.data for n in d.notes]


def plan(spec: EvalSpec, runs_dir=None) -> Plan:
    """The resolved evaluation; ValueError listing every problem, each naming its field."""
    problems = spec.validate()
    if problems:
        raise ValueError("The evaluation was not started:\n" + "\n".join(f"- {p}" for p in problems))
    from studio.evaluate import models
    from studio.evaluate.tasks import TaskData, TaskError, load_task

    out = Plan()
    for i, ref in enumerate(spec.models):
        try:
            out.refs.append(models.resolve(ref, runs_dir))
        except Exception as exc:  # noqa: BLE001 - JobError, ValueError, OSError: all a refusal
            problems.append(f"models[{i}]: {str(exc).removeprefix('models: ')}")
    problems += models.gguf_model.refusals(spec.tasks, out.refs)  # before any data is read
    run = models.run_of(out.refs)
    for i, task in enumerate(spec.tasks):
        where = f"tasks[{i}] ({task.name or task.kind})"
        try:
            if task.kind == "lm_eval":
                from studio.evaluate import lmeval

                out.data.append(TaskData([{}] * lmeval.count(task), notes=lmeval.check(task)))
            else:
                out.data.append(load_task(task, where, run.run_dir if run else None))
        except (TaskError, ValueError) as exc:
            problems.append(str(exc))
            out.data.append(TaskData([]))
    if problems:
        raise ValueError("The evaluation was not started:\n" + "\n".join(f"- {p}" for p in problems))
    out.labels = _unique([r.label for r in out.refs])
    out.total = len(out.refs) * sum(len(d.examples) for d in out.data)
    return out


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("settings.device: this machine has no CUDA GPU; choose cpu or auto")
    return choice
