"""One evaluation, start to end, in the current process: every model on every task,
the same examples and settings, per-example rows to examples.jsonl, the aggregate to
summary.json, progress to status.json. The background process (studio.evaluate.worker)
and the tests call run_eval; nothing here knows about gradio."""
from __future__ import annotations

import json
import time
from pathlib import Path

from studio.evaluate import checks, compare, scoring
from studio.evaluate.metrics import TEXT_METRICS
from studio.evaluate.spec import EvalSpec


class Progress:
    """done/total examples and an ETA, written to status.json at most every half second."""

    def __init__(self, eval_dir: Path, total: int):
        from studio.evaluate import background

        self.write, self.dir, self.total, self.done = background.write_status, eval_dir, max(total, 1), 0
        self.start, self.last = time.time(), 0.0

    def add(self, n: int, what: str = "") -> None:
        self.done += n
        now = time.time()
        if now - self.last > 0.5 or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-6)
            self.write(self.dir, done=self.done, total=self.total, doing=what,
                       eta_s=round((self.total - self.done) / rate, 1) if rate else None)


def run_eval(eval_dir: str | Path, runs_dir=None) -> dict:
    """Evaluate; returns the summary (also written to summary.json)."""
    eval_dir = Path(eval_dir)
    spec = EvalSpec.load(eval_dir / "spec.yaml")
    plan = checks.plan(spec, runs_dir)  # refs resolved, data read and checked: TaskError/ValueError
    progress = Progress(eval_dir, plan.total)
    device = checks.device(spec.settings.device)
    rows: list[dict] = []
    with open(eval_dir / "examples.jsonl", "w") as out:
        for label, ref in zip(plan.labels, plan.refs):
            for row in _one_model(spec, plan, label, ref, device, progress):
                rows.append(row)
        rows = compare.after_all_models(spec, plan, rows, device)
        for row in rows:
            out.write(json.dumps(_public(row), ensure_ascii=False) + "\n")
    summary = compare.summarise(spec, plan, rows)
    summary["eval_id"] = eval_dir.name
    (eval_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _one_model(spec: EvalSpec, plan, label: str, ref, device: str, progress: Progress):
    from studio.evaluate import models

    try:
        model, tokenizer = models.load(ref, device)
    except Exception as exc:  # noqa: BLE001 - named, then the evaluation stops
        raise RuntimeError(f"models: '{ref.ref}' could not be loaded: {exc}") from exc
    for t, (task, data) in enumerate(zip(spec.tasks, plan.data)):
        if task.kind == "lm_eval":
            from studio.evaluate import lmeval

            samples, results = lmeval.run_task(task, model, tokenizer, spec.settings)
            plan.lm_results[(label, task.name or f"task{t}")] = results
            for row in samples:
                yield {"model": label, "task": task.name or f"task{t}", **row}
            progress.add(len(data.examples), f"{label}: {task.name}")
            continue
        bs = spec.settings.batch_size
        items = _items(task, data, tokenizer)
        for start in range(0, len(items), bs):
            batch = items[start:start + bs]
            results = scoring.per_example(_scorer(task, spec, model, tokenizer), batch)
            for i, (example, result) in enumerate(zip(data.examples[start:start + bs], results)):
                yield _row(label, task, t, start + i, example, result)
            progress.add(len(batch), f"{label}: {task.name or task.kind}")
    del model


def _items(task, data, tokenizer) -> list:
    if task.kind == "loss":
        return scoring.encode_for_loss(tokenizer, data.examples, data.max_length, data.assistant_only)
    return data.examples


def _scorer(task, spec: EvalSpec, model, tokenizer):
    s = spec.settings
    if task.kind == "loss":
        return lambda b: scoring.loss_batch(b, model, tokenizer.pad_token_id)
    if task.kind == "choice":
        return lambda b: scoring.choice_batch(b, model, tokenizer, task.chat)
    if task.kind == "pairwise":
        return lambda b: scoring.pairwise_batch(b, model, tokenizer, task.chat)
    # generate, judge, parity: greedy replies (judge and parity are scored across models later)
    if tokenizer is None:  # a GGUF (models.load): llama.cpp's runtime generates
        from studio.evaluate.gguf_model import generate_batch

        return lambda b: generate_batch(b, model, s.max_new_tokens, task.chat)
    return lambda b: scoring.generate_batch(b, model, tokenizer, s.max_new_tokens, task.chat)


def _row(label: str, task, t: int, i: int, example: dict, result: dict) -> dict:
    row = {"model": label, "task": task.name or f"task{t}", "i": i, "input": _show(example),
           "reference": example.get("reference"), **{k: v for k, v in result.items() if k not in ("token_ids", "token_text")}}
    if task.kind == "judge":
        row["_prompt"] = example["prompt"]  # the reward model reads the prompt as the model saw it
    if "token_ids" in result:  # kept for the parity check, not written
        row["_token_ids"], row["_tokens"] = result["token_ids"], result["token_text"]
    if task.kind == "generate" and not row.get("error"):
        row["scores"] = {m: TEXT_METRICS[m](row["output"], row["reference"], pattern=task.pattern,
                                            tolerance=task.tolerance) for m in task.all_metrics()}
    if task.kind == "loss" and not row.get("error"):
        row["output"] = f"{row['nll'] / max(row['tokens'], 1):.4f} per token over {row['tokens']} tokens"
    return row


def _show(example: dict) -> str:
    prompt = example.get("prompt")
    if prompt is None and "messages" in example:
        prompt = example["messages"]
    if prompt is None:
        prompt = example.get("text", "")
    if isinstance(prompt, list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt)
    return str(prompt)
