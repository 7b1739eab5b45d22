"""The evaluation spec: models x tasks x settings, a YAML like the run spec.

Plain dataclasses and `validate()`, no torch: the UI builds one on every click. Every
model is evaluated on the same examples with the same settings.

Model references (strings):
  run:<id>                  a run's final/ (a run id or a run directory also works)
  run:<id>@checkpoint-50    one of its checkpoints
  base:<id>                 the model the run started from (its spec's model: a hub id or
                            folder, or the scratch architecture at the run's seed)
  <folder> | <hub id>       any model folder (an exported, merged one too) or hub id
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from studio.spec import SpecError, read_yaml

# kind -> the metrics it can compute (the first ones are the default)
METRICS = {
    "loss": ("loss", "perplexity"),
    "generate": ("exact_match", "contains", "regex", "numeric", "rouge_l", "bleu", "json_valid"),
    "choice": ("acc", "acc_norm"),
    "pairwise": ("pairwise_acc",),
    "judge": ("reward", "win_rate"),
    "parity": ("agreement",),
    "lm_eval": ("acc", "acc_norm", "exact_match"),
}
DEFAULT_METRICS = {"loss": ("loss", "perplexity"), "generate": ("exact_match",), "choice": ("acc", "acc_norm"),
                   "pairwise": ("pairwise_acc",), "judge": ("reward", "win_rate"), "parity": ("agreement",),
                   "lm_eval": ()}
RUN_DATA = "run"  # data: run -> the run's own held-out split (loss) or its data (others)


@dataclass
class TaskSpec:
    name: str = ""
    kind: str = "generate"  # one of METRICS
    data: str = ""  # a JSONL/JSON/CSV file, or "run" (the held-out split of the first run model)
    metrics: list[str] = field(default_factory=list)  # empty: the kind's default
    max_examples: int = 0  # 0 = all
    pattern: str = ""  # regex metric: the answer is this pattern's first group (or match)
    tolerance: float = 1e-6  # numeric metric: |a - b| <= tolerance * max(1, |b|)
    judge: str = ""  # judge: a reward-model run or folder
    lm_tasks: list[str] = field(default_factory=list)  # lm_eval: task names
    include_path: str = ""  # lm_eval: a folder of task YAMLs (default assets/eval)
    threshold: float = 0.0  # parity: the agreement to pass (1.0); forget: the drop shown red
    chat: bool = True  # render prompts with each model's chat template (False: raw text, a base's probe)

    def all_metrics(self) -> list[str]:
        return list(self.metrics or DEFAULT_METRICS.get(self.kind, ()))


@dataclass
class EvalSettings:
    max_new_tokens: int = 32
    batch_size: int = 16
    device: str = "auto"  # auto | cpu | cuda
    bootstrap: int = 1000  # resamples for the confidence intervals (0: none)
    confidence: float = 0.95
    seed: int = 0


@dataclass
class EvalSpec:
    name: str = "eval"
    models: list[str] = field(default_factory=list)
    tasks: list[TaskSpec] = field(default_factory=list)
    settings: EvalSettings = field(default_factory=EvalSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict | None) -> "EvalSpec":
        data = dict(data or {})
        unknown = set(data) - {"name", "models", "tasks", "settings"}
        if unknown:
            raise SpecError("eval spec", f"unknown field(s) {sorted(unknown)}; the fields are name, models, tasks, settings")
        tasks = [_build(TaskSpec, t, f"tasks[{i}]") for i, t in enumerate(data.get("tasks") or [])]
        settings = _build(EvalSettings, data.get("settings") or {}, "settings")
        models = data.get("models") or []
        if isinstance(models, str):
            models = [models]
        return cls(name=str(data.get("name") or "eval"), models=[str(m) for m in models], tasks=tasks,
                   settings=settings)

    @classmethod
    def load(cls, path: str | Path) -> "EvalSpec":
        return cls.from_dict(read_yaml(Path(path).read_text(), str(path)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    def validate(self) -> list[str]:
        """Every problem of the spec itself (fields, names, metric/kind fit). The data's
        columns and the models are checked by studio.evaluate.checks before work starts."""
        problems = []
        if not self.models:
            problems.append("models: name at least one model (run:<id>, base:<id>, a folder or a hub id)")
        if not self.tasks:
            problems.append("tasks: add at least one task (or use a preset: learn, forget, export)")
        for i, t in enumerate(self.tasks):
            problems += _task_problems(t, f"tasks[{i}]", self.models)
        s = self.settings
        if s.max_new_tokens < 1:
            problems.append("settings.max_new_tokens: must be at least 1")
        if s.batch_size < 1:
            problems.append("settings.batch_size: must be at least 1")
        if s.device not in ("auto", "cpu", "cuda") and not s.device.startswith("cuda:"):
            problems.append(f"settings.device: '{s.device}' is not auto, cpu or cuda")
        if not 0 < s.confidence < 1:
            problems.append("settings.confidence: a fraction between 0 and 1, e.g. 0.95")
        if s.bootstrap < 0:
            problems.append("settings.bootstrap: 0 (no intervals) or a number of resamples such as 1000")
        return problems


def _task_problems(t: TaskSpec, where: str, models: list[str]) -> list[str]:
    out = []
    if t.kind not in METRICS:
        return [f"{where}.kind: '{t.kind}' is not one of {', '.join(METRICS)}"]
    for m in t.metrics:
        if m not in METRICS[t.kind]:
            fits = [k for k, ms in METRICS.items() if m in ms]
            hint = f" ({m} is a metric of {', '.join(fits)} tasks)" if fits else ""
            out.append(f"{where}.metrics: '{m}' does not fit a {t.kind} task{hint}; "
                       f"choose from {', '.join(METRICS[t.kind])}")
    if t.kind == "lm_eval":
        if not t.lm_tasks:
            out.append(f"{where}.lm_tasks: name the lm-eval task(s), e.g. [studio_arith_mc]")
    elif not t.data:
        out.append(f"{where}.data: name a data file (JSONL, JSON or CSV) or 'run' for the run's held-out split")
    if "regex" in t.all_metrics() and t.kind == "generate" and not t.pattern:
        out.append(f"{where}.pattern: the regex metric needs a pattern whose first group is the answer, "
                   r"e.g. '(\d+)'")
    if t.kind == "judge" and not t.judge:
        out.append(f"{where}.judge: name a reward-model run or folder to score the replies")
    if t.kind == "parity" and len(models) < 2:
        out.append(f"{where}: the parity check compares the first model with the others; name at least two models "
                   "(the trained run and its export)")
    if t.kind == "judge" and "win_rate" in t.all_metrics() and len(models) < 2:
        out.append(f"{where}.metrics: win_rate compares two models; name a second model or drop win_rate")
    if t.max_examples < 0:
        out.append(f"{where}.max_examples: 0 (all) or a positive number")
    return out


def _build(cls, raw, where: str):
    if not isinstance(raw, dict):
        raise SpecError(where, f"expected a mapping of fields, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise SpecError(where, f"unknown field(s) {sorted(unknown)}; the fields are {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        value = raw[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs[f.name] = _coerce(value, default, f"{where}.{f.name}")
    return cls(**kwargs)


def _coerce(value, default, where: str):
    if isinstance(default, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise SpecError(where, "expected a list")
        return [str(v) for v in value]
    if isinstance(default, bool) or value is None:
        return value if value is not None else default
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise SpecError(where, f"expected {type(default).__name__}, got {value!r}") from None
