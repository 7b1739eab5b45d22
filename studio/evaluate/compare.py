"""What needs every model's replies first: export parity (the first model's greedy tokens
against each other model's), the reward-model judge and its win rate, and the summary.

Convention: the first model is A, the reference (the base, or the trained model before
export); every other model is a B compared with it. Deltas are B - A."""
from __future__ import annotations

from studio.evaluate.metrics import aggregate
from studio.evaluate.report import LOWER_IS_BETTER


def after_all_models(spec, plan, rows: list[dict], device: str) -> list[dict]:
    for t, task in enumerate(spec.tasks):
        name = task.name or f"task{t}"
        mine = [r for r in rows if r["task"] == name]
        if task.kind == "parity":
            _parity(mine, plan.labels)
        elif task.kind == "judge":
            _judge(task, mine, plan.labels, device)
    return rows


def _by_model(rows: list[dict], label: str) -> dict[int, dict]:
    return {r["i"]: r for r in rows if r["model"] == label}


def _first_difference(a: dict, b: dict) -> dict | None:
    ids_a, ids_b = a.get("_token_ids") or [], b.get("_token_ids") or []
    if ids_a == ids_b:
        return None
    pos = next((k for k, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
    show = lambda row, ids: (row["_tokens"][pos] if pos < len(ids) else "<end>")  # noqa: E731
    return {"position": pos, "a_token": show(a, ids_a), "b_token": show(b, ids_b)}


def _parity(rows: list[dict], labels: list[str]) -> None:
    ref = _by_model(rows, labels[0])
    for label in labels[1:]:
        for i, row in _by_model(rows, label).items():
            a = ref.get(i)
            if row.get("error") or a is None or a.get("error"):
                continue
            diff = _first_difference(a, row)
            row["scores"] = {"agreement": float(diff is None)}
            if diff:
                row["first_difference"] = diff


def _judge(task, rows: list[dict], labels: list[str], device: str) -> None:
    from studio.methods.reward_model import load_reward_model

    judge = load_reward_model(task.judge, device)
    ok = [r for r in rows if not r.get("error")]
    # chat form, as a reward run trained on conversations reads them (its own template)
    prompts = [p if isinstance(p := r.get("_prompt", r["input"]), list) else [{"role": "user", "content": p}]
               for r in ok]
    for r, score in zip(ok, judge(prompts=prompts, completions=[r["output"] for r in ok])):
        r["scores"] = {"reward": float(score)}
    if len(labels) < 2:
        return
    per = {label: _by_model(ok, label) for label in labels}
    for label in labels:
        other = per[labels[1] if label == labels[0] else labels[0]]
        for i, r in per[label].items():
            if i in other:
                a, b = r["scores"]["reward"], other[i]["scores"]["reward"]
                r["scores"]["win_rate"] = 1.0 if a > b else 0.5 if a == b else 0.0


def summarise(spec, plan, rows: list[dict]) -> dict:
    """{task: {model: {metric: {value, ci_low, ci_high, n, failed}}}}, B - A deltas, parity verdicts."""
    scores, deltas, parity = {}, {}, {}
    for t, task in enumerate(spec.tasks):
        name = task.name or f"task{t}"
        metrics = task.all_metrics() or sorted({m for r in rows if r["task"] == name for m in r.get("scores", {})})
        per_model = {}
        for label in plan.labels:
            mine = [r for r in rows if r["task"] == name and r["model"] == label]
            per_model[label] = {m: aggregate(mine, m, spec.settings) for m in metrics}
            per_model[label].update(plan.lm_results.get((label, name), {}))
        scores[name] = per_model
        deltas[name] = _deltas(per_model, plan.labels)
        if task.kind == "parity":
            parity[name] = _parity_verdict(task, rows, name, plan.labels, per_model)
    failed = sum(1 for r in rows if r.get("error"))
    return {"name": spec.name, "models": plan.labels, "refs": [r.ref for r in plan.refs],
            "tasks": [{"name": t.name or f"task{i}", "kind": t.kind, "metrics": t.all_metrics(),
                       "threshold": t.threshold} for i, t in enumerate(spec.tasks)],
            "scores": scores, "deltas": deltas, "parity": parity, "failed_examples": failed,
            "notes": plan.notes, "lower_is_better": list(LOWER_IS_BETTER)}


def _deltas(per_model: dict, labels: list[str]) -> dict:
    out = {}
    a = per_model[labels[0]]
    for label in labels[1:]:
        out[label] = {m: (v["value"] - a[m]["value"]) if v.get("value") is not None and a.get(m, {}).get("value")
                      is not None else None for m, v in per_model[label].items() if isinstance(v, dict)}
    return out


def _parity_verdict(task, rows, name, labels, per_model) -> dict:
    need = task.threshold or 1.0
    out = {}
    for label in labels[1:]:
        agreement = per_model[label]["agreement"]["value"]
        mismatches = [{"i": r["i"], "input": r["input"], **r["first_difference"]}
                      for r in rows if r["task"] == name and r["model"] == label and r.get("first_difference")]
        out[label] = {"agreement": agreement, "passed": agreement is not None and agreement >= need,
                      "threshold": need, "mismatches": mismatches}
    return out
