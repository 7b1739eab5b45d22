"""Per-reward charts for GRPO/PPO runs (the Train tab): each reward component's mean with
a +/- std band per step (trl logs rewards/<name>/mean and /std), and the share of groups
whose samples all scored the same (frac_reward_zero_std: GRPO's advantage is zero there,
so those prompts teach nothing), with a warning when that share stays high."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.charts import series

ZERO_STD = "frac_reward_zero_std"
ZERO_STD_WARN = 0.8  # above this for the last WARN_WINDOW logs: most groups teach nothing
WARN_WINDOW = 5


def components(records: list[dict]) -> list[str]:
    """Reward component names in the order first logged (rewards/<name>/mean)."""
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            if k.startswith("rewards/") and k.endswith("/mean") and k.count("/") == 2 \
                    and k.split("/")[1] not in ("chosen", "rejected", "margins", "accuracies"):
                names[k.split("/")[1]] = None
    return list(names)


def reward_figure(records: list[dict], x: str = "step") -> go.Figure | None:
    """Each component's mean (+/- std band) over steps, and the zero-variance share below;
    None when the run logs no reward components."""
    names = components(records)
    if not names:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.08,
                        subplot_titles=("reward components (mean ± std)", "groups with zero reward variance"))
    for name in names:
        xs, means = series(records, f"rewards/{name}/mean", x, kind="train")
        _, stds = series(records, f"rewards/{name}/std", x, kind="train")
        if len(stds) == len(means) and means:
            upper = [m + s for m, s in zip(means, stds)]
            lower = [m - s for m, s in zip(means, stds)]
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], fill="toself", opacity=0.15,
                                     line={"width": 0}, hoverinfo="skip", showlegend=False, name=f"{name} std"),
                          row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=means, mode="lines", name=name), row=1, col=1)
    xs, share = series(records, ZERO_STD, x, kind="train")
    if share:
        fig.add_trace(go.Scatter(x=xs, y=share, mode="lines", name="zero-variance groups",
                                 line={"color": "#d62728"}), row=2, col=1)
        fig.add_hline(y=ZERO_STD_WARN, line_dash="dot", line_color="#999", row=2, col=1)
    fig.update_yaxes(range=[0, 1.05], row=2, col=1)
    fig.update_layout(height=420, margin={"l": 40, "r": 10, "t": 40, "b": 30}, legend={"orientation": "h"})
    return fig


def zero_std_warning(records: list[dict]) -> str:
    """A warning when the last WARN_WINDOW logged shares of zero-variance groups are all
    above ZERO_STD_WARN, else ""."""
    _, share = series(records, ZERO_STD, "step", kind="train")
    recent = share[-WARN_WINDOW:]
    if len(recent) < WARN_WINDOW or min(recent) <= ZERO_STD_WARN:
        return ""
    return (f"{sum(recent) / len(recent):.0%} of GRPO's groups scored all their samples the same over the last "
            f"{WARN_WINDOW} logs: those prompts teach nothing. Give partial credit (e.g. closeness, json_match), "
            "raise method.temperature or method.group_size, or use easier prompts.")
