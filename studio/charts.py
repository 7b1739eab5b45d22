"""Pure functions: metric records -> plotly figures (and the numbers behind them).

Raw data is never thrown away: records stay as read from metrics.jsonl, and only the
display is downsampled (min/max per bucket, so spikes stay visible)."""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_POINTS = 1500
BASE_KEYS = {"step", "time", "elapsed", "kind", "epoch", "loss", "eval_loss", "learning_rate",
             "grad_norm", "tokens_per_second", "num_tokens", "runtime", "perplexity"}
SIGNALS = (("learning_rate", "learning rate"), ("grad_norm", "grad norm"),
           ("tokens_per_second", "tokens / s"))


def series(records: list[dict], key: str, x: str = "step", kind: str | None = None) -> tuple[list, list]:
    xs, ys = [], []
    for r in records:
        if (kind and r.get("kind") != kind) or r.get("kind") == "event":  # events are markers, not points
            continue
        y = r.get(key)
        xv = r.get(x if x != "tokens" else "num_tokens")
        if isinstance(y, (int, float)) and isinstance(xv, (int, float)) and math.isfinite(y):
            xs.append(xv)
            ys.append(y)
    return xs, ys


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard does), so the
    first points are not dragged towards zero."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i) if weight < 1 else v)
    return out


def downsample(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """Keep the min and the max of each bucket (in x order) so the shape survives."""
    n = len(xs)
    if n <= max_points:
        return xs, ys
    buckets = max_points // 2
    size = n / buckets
    out_x, out_y = [], []
    for b in range(buckets):
        lo, hi = int(b * size), min(int((b + 1) * size), n)
        if lo >= hi:
            continue
        chunk = range(lo, hi)
        i_min = min(chunk, key=ys.__getitem__)
        i_max = max(chunk, key=ys.__getitem__)
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def _layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=40, b=40),
                      template="plotly_white", legend=dict(orientation="h", y=-0.2), uirevision="keep")
    return fig


def loss_figure(records: list[dict], smoothing: float = 0.6, x: str = "step", log_y: bool = False,
                runs: dict[str, list[dict]] | None = None) -> go.Figure:
    """Train loss (raw + smoothed) and eval loss on the same axes. With `runs`
    (name -> records) the curves of several runs are overlaid for comparison."""
    fig = go.Figure()
    groups = runs if runs else {"": records}
    for name, recs in groups.items():
        label = f"{name} " if name else ""
        xs, ys = series(recs, "loss", x, kind="train")
        if xs:
            dx, dy = downsample(xs, ys)
            fig.add_trace(go.Scatter(x=dx, y=dy, mode="lines", name=f"{label}train loss",
                                     opacity=0.35 if smoothing > 0 else 1.0))
            if smoothing > 0:
                sx, sy = downsample(xs, smooth(ys, smoothing))
                fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name=f"{label}smoothed"))
        ex, ey = series(recs, "eval_loss", x)
        if ex:
            fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines+markers", name=f"{label}eval loss"))
    if not runs:
        add_events(fig, records, x)
    fig.update_xaxes(title="tokens" if x == "tokens" else "step")
    fig.update_yaxes(type="log" if log_y else "linear")
    return _layout(fig, "Loss")


EVENT_LABELS = {"rollback": "rollback", "diverged": "diverged"}


def events(records: list[dict], x: str = "step") -> list[tuple[float, str]]:
    """(x, label) of each divergence event (rollback, diverged) in metrics.jsonl. On the
    tokens axis an event sits at the tokens seen by the last record at or before its step."""
    out, tokens = [], None
    for r in records:
        if r.get("kind") != "event":
            if isinstance(r.get("num_tokens"), (int, float)):
                tokens = r["num_tokens"]
            continue
        name, step = r.get("event"), r.get("step")
        if name not in EVENT_LABELS or not isinstance(step, (int, float)):
            continue
        at = tokens if x == "tokens" else step
        if at is None:
            continue
        label = EVENT_LABELS[name]
        if name == "rollback" and isinstance(r.get("learning_rate"), (int, float)):
            label += f" · lr {r['learning_rate']:.2g}"
        out.append((at, label))
    return out


def add_events(fig: go.Figure, records: list[dict], x: str = "step") -> None:
    """Vertical dashed markers with a label at each event (layout shapes, so they do not
    add legend entries or change the axes' range)."""
    for at, label in events(records, x):
        fig.add_vline(x=at, line_dash="dash", line_color="#d62728", line_width=1,
                      annotation_text=label, annotation_position="top left",
                      annotation_font_color="#d62728", annotation_font_size=10)


def method_keys(records: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in BASE_KEYS and isinstance(v, (int, float)) and not k.startswith("eval_") \
                    and not k.startswith("train_") and r.get("kind") not in ("summary", "event"):
                keys[k] = None
    return list(keys)


def group_keys(keys: list[str]) -> dict[str, list[str]]:
    """rewards/chosen + rewards/rejected share a chart, client/0/loss + client/1/loss
    (federated) or peer/*/loss (decentralized) too; other keys get their own."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        head = k.split("/")[0] if "/" in k else k
        parts = k.split("/")
        if len(parts) == 3 and parts[0] in ("client", "peer"):  # scale-out: one chart per metric, a line per member
            head = f"{parts[0]}/*/{parts[2]}"
        groups.setdefault(head, []).append(k)
    return groups


def signals_figure(records: list[dict], x: str = "step") -> go.Figure | None:
    present = [(k, t) for k, t in SIGNALS if series(records, k, x)[0]]
    if not present:
        return None
    fig = make_subplots(rows=1, cols=len(present), subplot_titles=[t for _, t in present])
    for col, (key, title) in enumerate(present, 1):
        xs, ys = downsample(*series(records, key, x))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=title, showlegend=False), row=1, col=col)
    return _layout(fig, "Training signals", 260)


def method_figure(records: list[dict], x: str = "step") -> go.Figure | None:
    groups = group_keys(method_keys(records))
    if not groups:
        return None
    names = list(groups)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names)
    for i, name in enumerate(names):
        for key in groups[name]:
            xs, ys = downsample(*series(records, key, x))
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=key), row=i // cols + 1, col=i % cols + 1)
    return _layout(fig, "Method metrics", 240 * rows + 60)
