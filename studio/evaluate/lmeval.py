"""The lm-evaluation-harness bridge: lm-eval's own tasks and metrics, run through its
API on the model the studio already loaded (HFLM accepts a model object), so a run's
model, its base and an export are scored by the same code as `lm_eval` on the command line.

The studio ships small task definitions under assets/eval/ (YAML + JSONL) that run
offline. The standard benchmarks are listed with where their data comes from: they need
the hub (or its offline cache), and are refused with that note when it is not there."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL_TASKS = ROOT / "assets" / "eval"

# name -> (what it measures, the hub dataset lm-eval downloads)
BENCHMARKS = {
    "mmlu": ("57 subjects, multiple choice (knowledge)", "cais/mmlu"),
    "arc_easy": ("grade-school science, easy set", "allenai/ai2_arc"),
    "arc_challenge": ("grade-school science, challenge set", "allenai/ai2_arc"),
    "hellaswag": ("commonsense sentence endings", "Rowan/hellaswag"),
    "gsm8k": ("grade-school math word problems, generated answers", "openai/gsm8k"),
    "truthfulqa_mc2": ("answers that avoid common misconceptions", "truthfulqa/truthful_qa"),
    "ifeval": ("verifiable instruction following", "google/IFEval"),
    "winogrande": ("pronoun resolution", "allenai/winogrande"),
}


def local_tasks() -> list[str]:
    return sorted(p.stem for p in LOCAL_TASKS.glob("*.yaml"))


def _cached(dataset: str) -> bool:
    home = Path(os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache"
                                                                           / "huggingface")) / "datasets")
    return any(home.glob(dataset.replace("/", "___") + "*")) if home.is_dir() else False


def catalogue() -> list[dict]:
    """The tasks the Evaluate tab and `studio eval tasks` offer, each with whether it runs here."""
    rows = [{"task": t, "what": "shipped with the studio (assets/eval)", "offline": True} for t in local_tasks()]
    for name, (what, dataset) in BENCHMARKS.items():
        offline = _cached(dataset)
        note = "" if offline else f"data not available offline: lm-eval downloads {dataset} from the Hugging Face hub"
        rows.append({"task": name, "what": what, "offline": offline, "note": note})
    return rows


def check(task) -> list[str]:
    """Refuse, before work starts, a task lm-eval does not know or whose data is not here."""
    known = {r["task"]: r for r in catalogue()}
    include = task.include_path or str(LOCAL_TASKS)
    for name in task.lm_tasks:
        row = known.get(name)
        if row is None and not (Path(include) / f"{name}.yaml").is_file():
            raise ValueError(f"lm_tasks: '{name}' is not a task the studio knows; shipped: {', '.join(local_tasks())}; "
                             f"standard: {', '.join(BENCHMARKS)} (or put its YAML in include_path)")
        if row is not None and not row["offline"] and os.environ.get("HF_DATASETS_OFFLINE") == "1":
            raise ValueError(f"lm_tasks: '{name}': {row['note']}; this machine is offline (HF_DATASETS_OFFLINE=1). "
                             "Use a shipped task or fill the datasets cache first")
    return []


def count(task) -> int:
    """Documents in the local tasks (for progress); a standard benchmark counts as 0."""
    n = 0
    for name in task.lm_tasks:
        data = LOCAL_TASKS / f"{name.removeprefix('studio_')}.jsonl"
        if data.is_file():
            n += sum(1 for line in data.read_text().splitlines() if line.strip())
    return n


@contextlib.contextmanager
def _at_project_root():
    """The shipped YAMLs name their data relative to the project, as the CLI example runs it."""
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(here)


def run_task(task, model, tokenizer, settings, batch_size: int | None = None) -> tuple[list[dict], dict]:
    """(per-document rows, {metric: {value, stderr, ci_low, ci_high}}) from lm-eval itself."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size or settings.batch_size,
              max_length=getattr(model.config, "max_position_embeddings", None))
    with _at_project_root():
        manager = TaskManager(include_path=task.include_path or str(LOCAL_TASKS))
        out = simple_evaluate(model=lm, tasks=list(task.lm_tasks), task_manager=manager, log_samples=True,
                              bootstrap_iters=0 if not settings.bootstrap else settings.bootstrap,
                              random_seed=settings.seed, limit=task.max_examples or None)
    rows, metrics = [], {}
    z = 1.959963984540054  # the normal interval from lm-eval's stderr at 95%
    for name, result in out["results"].items():
        for key, value in result.items():
            metric, _, _filter = key.partition(",")
            if not isinstance(value, (int, float)) or metric.endswith("_stderr") or metric in ("alias", "sample_len"):
                continue
            stderr = result.get(f"{metric}_stderr,{_filter}")
            stderr = stderr if isinstance(stderr, (int, float)) else None
            label = metric if len(out["results"]) == 1 else f"{name}/{metric}"
            metrics[label] = {"value": float(value), "stderr": stderr, "n": len(out["samples"].get(name, [])),
                              "failed": 0, "ci_low": value - z * stderr if stderr else None,
                              "ci_high": value + z * stderr if stderr else None}
        for s in out["samples"].get(name, []):
            rows.append(_sample_row(name, s))
    return rows, metrics


def _sample_row(name: str, sample: dict) -> dict:
    doc = sample.get("doc", {})
    scores = {k: float(v) for k, v in sample.items() if k in ("acc", "acc_norm", "exact_match")
              and isinstance(v, (int, float, bool))}
    resps = sample.get("filtered_resps") or []
    pick = None
    if resps and all(isinstance(r, (list, tuple)) for r in resps):
        lls = [r[0] for r in resps]
        pick = max(range(len(lls)), key=lls.__getitem__)
    choices = doc.get("choices") if isinstance(doc.get("choices"), list) else None
    return {"i": sample.get("doc_id"), "input": str(doc.get("question", sample.get("arguments", ""))),
            "reference": str(sample.get("target")), "output": choices[pick] if choices and pick is not None
            else str(resps[:1]), "scores": scores, "lm_task": name}
