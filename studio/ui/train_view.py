"""What the Train tab and the run-state header show, as pure functions of a run's files
(status.json, metrics.jsonl, train.log): no widgets here, so each is testable alone."""
from __future__ import annotations

import ast
import html
import re
import time
from pathlib import Path

from studio import charts, jobs
from studio.metrics import read_all

HISTORY_HEADERS = ["run", "name", "method", "state", "step", "last train loss (smoothed)", "last eval loss",
                   "duration"]
GOING = ("running", "queued", "starting")
SMOOTHING = 0.6  # the chart's default smoothing: the history's figure is the curve's end
LOG_LINES = 10  # as many as the log box shows: its last line is the file's last line, no scrolling
TIED_NOTE = ("    ↳ harmless when the model ties lm_head to its input embeddings (tie_word_embeddings, as the "
             "studio's small models do): lm_head.weight is not stored separately and is rebuilt from them.")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DICT_LINE = re.compile(r"^\s*\{'[^']+': .*\}\s*$")


def fmt_secs(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def run_choices(runs_dir) -> list[tuple[str, str]]:
    """(label, run id) per run; the label carries the state, so it is rebuilt whenever a
    state changes (poll) and on page load, never kept from the build."""
    return [(f"{r['run_id']} · {r['state']} · {r['method']}", r["run_id"]) for r in jobs.list_runs(runs_dir)]


def last_losses(records: list[dict], smoothing: float = SMOOTHING) -> tuple[float | None, float | None]:
    """(the end of the smoothed train-loss curve, the last eval loss), as the chart shows
    them: the trainer's closing `train_loss` is an average over the run, not where it ended."""
    _, ys = charts.series(records, "loss", kind="train")
    _, ev = charts.series(records, "eval_loss")
    return (charts.smooth(ys, smoothing)[-1] if ys else None), (ev[-1] if ev else None)


def _num(x) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "–"


def history_rows(runs_dir) -> list[list]:
    rows = []
    for r in jobs.list_runs(runs_dir):
        try:
            train, ev = last_losses(read_all(Path(r["path"])))
        except Exception:  # noqa: BLE001 - a damaged metrics file shows as no figure, the row stays
            train, ev = None, None
        rows.append([r["run_id"], r["name"], r["method"], r["state"], f"{r['step']}/{r['total']}", _num(train),
                     _num(ev), fmt_secs(r["duration_s"])])
    return rows or [[""] * len(HISTORY_HEADERS)]


def eta_seconds(st: dict) -> float | None:
    step, total = st.get("step") or 0, st.get("total") or 0
    started = st.get("started")
    if not (started and step and st.get("state") == "running"):
        return None
    return (time.time() - started) / step * max(total - step, 0)


def progress_html(st: dict, records: list[dict]) -> str:
    if not st or st.get("state") in (None, "unknown"):
        return "<div id='progress-info'>No run selected. Press Start to train the current spec.</div>"
    step, total = st.get("step", 0) or 0, max(st.get("total", 0) or 0, 1)
    started = st.get("started")
    end = st.get("ended") or time.time()
    elapsed = (end - started) if started else None
    tokens = next((r["num_tokens"] for r in reversed(records) if r.get("num_tokens")), None)
    pct = min(100.0, 100.0 * step / total)
    state = st.get("state")
    position = st.get("queue_position") if state == "queued" else None
    extra = f" · position {position} in the queue (waiting for the device)" if position else ""
    peak = st.get("peak_memory_bytes")
    parts = [f"<b class='state-badge state-{html.escape(str(state))}'>{html.escape(str(state))}</b>{extra}",
             f"step {step}/{total}", f"epoch {st.get('epoch') or 0:.2f}", f"elapsed {fmt_secs(elapsed)}",
             f"ETA {fmt_secs(eta_seconds(st))}"]
    if tokens:
        parts.append(f"tokens {int(tokens):,}")
    if peak:
        parts.append(f"<span class='peak-memory'>peak memory {peak / 2**30:.2f} GiB</span>")
    if st.get("num_processes", 1) > 1:
        parts.append(f"{st['num_processes']} processes")
    err = ""
    if st.get("error"):
        err = f"<pre class='run-error'>{html.escape(st['error'])}</pre>"
    return (f"<div id='progress-info' data-state='{state}' data-step='{step}' data-total='{total}'"
            f" data-queue='{position or ''}' data-peak='{peak or ''}'>"
            f"<progress value='{step}' max='{total}' style='width:100%'></progress>"
            f"<div>{pct:.0f}% · {' · '.join(parts)}</div>{err}</div>")


def header_html(run_id: str, st: dict, records: list[dict]) -> str:
    """The one line every tab shows: the watched run, its state, step, loss and ETA."""
    if not run_id or not st or st.get("state") in (None, "unknown"):
        return ("<div id='run-header-info' data-state=''><span class='state-badge state-none'>no run</span>"
                " Nothing is training. Start one on the Train tab (or with the quickstart).</div>")
    state = str(st.get("state"))
    train, ev = last_losses(records)
    loss = f" · loss {train:.3f}" if train is not None else ""
    loss += f" · eval {ev:.3f}" if ev is not None else ""
    eta = eta_seconds(st)
    return (f"<div id='run-header-info' data-state='{html.escape(state)}' data-run='{html.escape(run_id)}'>"
            f"<span class='state-badge state-{html.escape(state)}'>{html.escape(state)}</span> "
            f"<b>{html.escape(run_id)}</b> · step {st.get('step') or 0}/{st.get('total') or 0}{loss}"
            f"{' · ETA ' + fmt_secs(eta) if eta is not None else ''}</div>")


def readable_log_line(line: str) -> list[str]:
    """A train.log line as a person reads it: the trainer's printed dicts as `key value`
    pairs, and the tied-embedding 'missing lm_head.weight' notice explained as harmless."""
    line = out = _ANSI.sub("", line)
    if _DICT_LINE.match(line):
        try:
            d = ast.literal_eval(line.strip())
            out = " · ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())
        except (ValueError, SyntaxError):
            out = line
    lines = [out]
    low = line.lower()
    if "lm_head.weight" in line and ("missing" in low or "not initialized" in low or "newly initialized" in low):
        lines.append(TIED_NOTE)
    return lines


def log_tail(run_dir: Path, lines: int = LOG_LINES) -> str:
    """The last `lines` readable lines of train.log (progress bars' carriage returns kept
    to their last state), so the box ends where the file ends."""
    try:
        with open(run_dir / "train.log", "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    shown: list[str] = []
    for raw in text.splitlines():
        shown.extend(readable_log_line(raw.rsplit("\r", 1)[-1]))
    return "\n".join(shown[-lines:])


def button_states(st: dict, run_dir: Path | None) -> tuple[bool, bool, bool]:
    """(stop, stop and save, resume) enabled: stopping acts on a run that is going,
    resuming on one that ended with a checkpoint to continue from."""
    state = (st or {}).get("state")
    going = state in GOING
    can_resume = bool(run_dir and state in jobs.TERMINAL and jobs.latest_checkpoint(run_dir) is not None)
    return going, state == "running", can_resume
