"""Trying a reward before a run: score hand-written (or sampled) completions with each
component of method.reward and their weighted sum. Used by `python -m studio reward try`
and the Method tab's playground; pure python (a model: reward loads its model)."""
from __future__ import annotations

from dataclasses import dataclass

from studio.rewards.config import parse
from studio.rewards.registry import build


@dataclass
class Scores:
    components: list[str]  # metric names, in method.reward's order
    weights: list[float]
    rows: list[list[float | None]]  # per completion: one score per component
    totals: list[float]  # per completion: the weighted sum (what GRPO ranks by)


def score_completions(reward, completions: list[str], references: list[str] | None = None,
                      prompts: list[str] | None = None) -> Scores:
    """Every component's score for every completion. references: one for all, or one per
    completion (None: no answer column). Raises ValueError naming method.reward."""
    if not completions:
        raise ValueError("completions: give at least one completion to score")
    n = len(completions)
    if references is not None:
        if len(references) == 1:
            references = list(references) * n
        elif len(references) != n:
            raise ValueError(f"references: give one reference, or one per completion ({n}); got {len(references)}")
    funcs, weights = build(reward)
    names = [e.metric for e in parse(reward)]
    prompts = prompts if prompts is not None and len(prompts) == n else [""] * n
    columns = []
    for fn in funcs:
        got = fn(completions=list(completions), answer=references, prompts=prompts)
        if len(got) != n:
            raise ValueError(f"method.reward: {getattr(fn, '__name__', fn)} returned {len(got)} scores for {n}")
        columns.append(got)
    rows = [list(r) for r in zip(*columns)]
    totals = [sum(w * (s or 0.0) for w, s in zip(weights, row)) for row in rows]
    return Scores(names, weights, rows, totals)


def as_table(scores: Scores, completions: list[str], width: int = 40) -> list[list]:
    """Rows for a table: completion (shortened), total, each component."""
    def short(text):
        one_line = " ".join(text.split())
        return one_line if len(one_line) <= width else one_line[:width - 1] + "…"

    return [[short(c), round(t, 4), *[None if s is None else round(s, 4) for s in row]]
            for c, t, row in zip(completions, scores.totals, scores.rows)]


def headers(scores: Scores) -> list[str]:
    return ["completion", "total", *[n if w == 1.0 else f"{n} (x{w:g})" for n, w in zip(scores.components,
                                                                                     scores.weights)]]


def spread(scores: Scores, group_size: int) -> dict:
    """For sampled completions (group_size consecutive ones per prompt, as GRPO draws
    them): the mean total, and how many groups score every sample the same. GRPO's
    advantage is the score minus its group's mean, so such a group teaches nothing
    (trl logs the share as frac_reward_zero_std)."""
    totals, size = scores.totals, max(1, int(group_size))
    groups = [totals[i:i + size] for i in range(0, len(totals), size)]
    flat = sum(1 for g in groups if max(g) - min(g) < 1e-9)
    return {"mean_total": sum(totals) / len(totals) if totals else 0.0, "groups": len(groups), "flat_groups": flat}
