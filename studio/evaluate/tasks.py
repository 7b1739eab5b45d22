"""A task's data -> its examples, in one shape per kind, with the columns checked before
any model loads. No torch.

  loss      {"messages"} (assistant tokens scored) or {"text"} (every token)
  generate  {"prompt" (text or messages), "reference"}
  choice    {"prompt", "choices", "label"}
  pairwise  {"prompt", "chosen", "rejected"}
  judge     {"prompt"}
  parity    {"prompt"}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.evaluate.spec import RUN_DATA, TaskSpec

NEEDS = {  # kind -> the columns it reads, for the refusal
    "loss": "messages (chat) or text",
    "generate": "prompt + answer, or messages whose last turn is the assistant's reference",
    "choice": "question (or prompt) + choices (a list) + answer (the right choice's index or text)",
    "pairwise": "prompt + chosen + rejected",
    "judge": "prompt (or messages)",
    "parity": "prompt (or messages)",
}


class TaskError(ValueError):
    """A task whose data does not fit it: names the field and the fix."""


@dataclass
class TaskData:
    examples: list[dict]
    max_length: int | None = None  # loss: cut as the trainer cut (model.max_seq_len)
    assistant_only: bool = True
    notes: list[str] = field(default_factory=list)


def _read_rows(path: str, where: str) -> list[dict]:
    from studio.data.errors import DataError
    from studio.data.sources import read_file, resolve_path

    try:
        raw = read_file(resolve_path(path, f"{where}.data"))
    except (DataError, OSError) as exc:
        raise TaskError(f"{where}.data: {exc}") from None
    return [r for r in raw.rows if isinstance(r, dict)]


def _run_heldout(run_dir: str, where: str) -> TaskData:
    """The rows the trainer evaluated on: the run's split (same seed), cut to eval_steps
    batches as studio.methods.common.load_data cuts it."""
    from studio.data import build
    from studio.methods import method
    from studio.spec import RunSpec

    spec = RunSpec.load(Path(run_dir) / "spec.yaml")
    bundle = build(spec, method(spec.method.name).data_kinds)
    if bundle.eval is None:
        raise TaskError(f"{where}.data: run {Path(run_dir).name} kept no held-out split (data.eval_fraction is 0); "
                        "name a data file instead, e.g. assets/data/arith_sft_test.jsonl")
    rows = bundle.eval
    if spec.train.eval_steps > 0:
        rows = rows.select(range(min(len(rows), spec.train.eval_steps * spec.train.batch_size)))
    return TaskData(rows.to_list(), max_length=spec.model.max_seq_len, assistant_only=spec.data.assistant_only_loss)


def _text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _prompt(row: dict):
    if isinstance(row.get("messages"), list) and row["messages"]:
        msgs = row["messages"]
        return msgs[:-1] if msgs[-1].get("role") == "assistant" else msgs
    for key in ("prompt", "question", "input", "instruction"):
        if key in row:
            return _text(row[key])
    return None


def shape(kind: str, row: dict) -> dict | None:
    """One row in the kind's shape, or None when it lacks a column the kind needs."""
    if kind == "loss":
        if isinstance(row.get("messages"), list):
            return {"messages": row["messages"]}
        return {"text": row["text"]} if isinstance(row.get("text"), str) else None
    prompt = _prompt(row)
    if prompt is None:
        return None
    if kind == "generate":
        ref = next((row[k] for k in ("answer", "reference", "completion", "target") if row.get(k) is not None), None)
        if ref is None and isinstance(row.get("messages"), list) and row["messages"][-1].get("role") == "assistant":
            ref = row["messages"][-1].get("content")
        return None if ref is None else {"prompt": prompt, "reference": _text(ref)}
    if kind == "choice":
        choices, answer = row.get("choices"), row.get("answer", row.get("label"))
        if not isinstance(choices, list) or len(choices) < 2 or answer is None:
            return None
        label = answer if isinstance(answer, int) else ([_text(c) for c in choices].index(_text(answer))
                                                        if _text(answer) in map(_text, choices) else None)
        if label is None or not 0 <= label < len(choices):
            return None
        return {"prompt": prompt, "choices": [_text(c) for c in choices], "label": label}
    if kind == "pairwise":
        if row.get("chosen") is None or row.get("rejected") is None:
            return None
        return {"prompt": prompt, "chosen": _text(row["chosen"]), "rejected": _text(row["rejected"])}
    return {"prompt": prompt}  # judge, parity


def load_task(task: TaskSpec, where: str, run_dir: str | None) -> TaskData:
    """The task's examples; TaskError before any model loads when the data does not fit."""
    if task.data == RUN_DATA:
        if not run_dir:
            raise TaskError(f"{where}.data: 'run' means a run's held-out split, but no model is a run; "
                            "add run:<id> to models or name a data file")
        data = _run_heldout(run_dir, where)
        rows = data.examples
    else:
        data, rows = TaskData([]), _read_rows(task.data, where)
    shaped = [shape(task.kind, r) for r in rows]
    good = [s for s in shaped if s is not None]
    if not good:
        columns = sorted({k for r in rows[:50] for k in r})
        raise TaskError(f"{where}.data: no row has the columns a {task.kind} task reads ({NEEDS[task.kind]}); "
                        f"the data has {', '.join(columns) or 'no columns'}. Pick a file with those columns, "
                        "or another task kind")
    if len(good) < len(shaped):
        data.notes.append(f"{len(shaped) - len(good)} rows without the columns of a {task.kind} task left out")
    if task.max_examples:
        good = good[:task.max_examples]
    data.examples = good
    return data
