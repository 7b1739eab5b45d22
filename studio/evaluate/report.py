"""A summary as people read it: scorecard rows (metric, value, interval, delta, and
whether B dropped past the task's threshold), text for the CLI, the A/B example table.
Pure functions, no torch: the Evaluate tab calls them."""
from __future__ import annotations

LOWER_IS_BETTER = ("loss", "perplexity")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def dropped(metric: str, delta, threshold: float) -> bool:
    """B is worse than A by more than the threshold (higher loss, lower accuracy)."""
    if delta is None or not threshold:
        return False
    return (delta > threshold) if metric in LOWER_IS_BETTER else (-delta > threshold)


def scorecard(summary: dict) -> list[dict]:
    """One row per task x model x metric."""
    rows = []
    thresholds = {t["name"]: t.get("threshold") or 0.0 for t in summary.get("tasks", [])}
    for task, per_model in summary.get("scores", {}).items():
        for model, metrics in per_model.items():
            for metric, s in metrics.items():
                delta = summary.get("deltas", {}).get(task, {}).get(model, {}).get(metric)
                ci = f"[{_fmt(s.get('ci_low'))}, {_fmt(s.get('ci_high'))}]" if s.get("ci_low") is not None else ""
                rows.append({"task": task, "model": model, "metric": metric, "value": s.get("value"),
                             "ci": ci, "n": s.get("n"), "failed": s.get("failed", 0), "delta": delta,
                             "dropped": dropped(metric, delta, thresholds.get(task, 0.0))})
    return rows


def scorecard_text(summary: dict) -> str:
    lines = [f"{'task':<20} {'model':<44} {'metric':<13} {'value':>9} {'95% CI':<22} {'B-A':>9}  n (failed)"]
    for r in scorecard(summary):
        mark = "  DROP" if r["dropped"] else ""
        lines.append(f"{r['task'][:20]:<20} {r['model'][:44]:<44} {r['metric']:<13} {_fmt(r['value']):>9} "
                     f"{r['ci']:<22} {_fmt(r['delta']):>9}  {r['n']} ({r['failed']}){mark}")
    for task, verdicts in summary.get("parity", {}).items():
        for model, v in verdicts.items():
            lines.append(f"{task}: {model} {'PASSED' if v['passed'] else 'FAILED'} "
                         f"({_fmt(v['agreement'])} agreement, {len(v['mismatches'])} mismatches)")
            for m in v["mismatches"][:5]:
                lines.append(f"  example {m['i']}: first difference at token {m['position']}: "
                             f"{m['a_token']!r} vs {m['b_token']!r}")
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _correct(row: dict | None) -> bool | None:
    if row is None or row.get("error") or not row.get("scores"):
        return None
    return next(iter(row["scores"].values())) >= 1.0  # the task's first metric


def ab_table(examples: list[dict], task: str, a: str, b: str, only_regressions: bool = False) -> list[list]:
    """[i, input, reference, A output, B output, A right, B right] per example of a task;
    only_regressions keeps those B got wrong and A right."""
    rows_a = {r["i"]: r for r in examples if r["task"] == task and r["model"] == a}
    rows_b = {r["i"]: r for r in examples if r["task"] == task and r["model"] == b}
    out = []
    for i in sorted(set(rows_a) | set(rows_b), key=lambda x: (x is None, x)):
        ra, rb = rows_a.get(i), rows_b.get(i)
        ok_a, ok_b = _correct(ra), _correct(rb)
        if only_regressions and not (ok_a is True and ok_b is False):
            continue
        first = ra or rb
        out.append([i, first.get("input", "")[:300], first.get("reference") or "",
                    (ra or {}).get("output") or (ra or {}).get("error") or "",
                    (rb or {}).get("output") or (rb or {}).get("error") or "", ok_a, ok_b])
    return out
