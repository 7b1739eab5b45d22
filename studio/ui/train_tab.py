"""Train tab: start/stop/resume, live charts, progress, the log, run history.

All per-browser values live in gr.State (the run being watched, the byte offset into
its metrics.jsonl, the records read so far); everything else is read from the run
directory, so a reload or a second browser reattaches to the same run."""
from __future__ import annotations

import html
import time
from pathlib import Path

import gradio as gr

from studio import charts, jobs
from studio.metrics import MetricsTail
from studio.spec import SpecError
from studio.ui import form

PATHS = ["name", "train.max_steps", "train.batch_size", "train.grad_accum", "train.learning_rate",
         "train.optimizer", "train.scheduler", "train.warmup_steps", "train.weight_decay",
         "train.max_grad_norm", "train.seed", "train.precision", "train.gradient_checkpointing",
         "train.log_every", "train.eval_every", "train.eval_steps", "train.save_every",
         "train.save_best_only", "train.epochs", "train.num_processes", "train.report_to"]
POLL_SECONDS = 1.0


def build(spec, runs_dir) -> dict:
    fields = {"name": gr.Textbox(value=spec.name, label="run name", elem_id="name")}
    with gr.Accordion("Training settings", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, PATHS[1:]))
    return fields


def run_choices(runs_dir) -> list[tuple[str, str]]:
    return [(f"{r['run_id']} · {r['state']} · {r['method']}", r["run_id"]) for r in jobs.list_runs(runs_dir)]


def _fmt_secs(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_html(st: dict, records: list[dict]) -> str:
    if not st or st.get("state") in (None, "unknown"):
        return "<div id='progress-info'>No run selected. Press Start to train the current spec.</div>"
    step, total = st.get("step", 0) or 0, max(st.get("total", 0) or 0, 1)
    started = st.get("started")
    end = st.get("ended") or time.time()
    elapsed = (end - started) if started else None
    eta = (elapsed / step * (total - step)) if (elapsed and step and st.get("state") == "running") else None
    tokens = next((r["num_tokens"] for r in reversed(records) if r.get("num_tokens")), None)
    pct = min(100.0, 100.0 * step / total)
    state = st.get("state")
    extra = f" · queue position {st['queue_position']}" if state == "queued" and st.get("queue_position") else ""
    peak = st.get("peak_memory_bytes")
    parts = [f"<b>{html.escape(str(state))}</b>{extra}", f"step {step}/{total}",
             f"epoch {st.get('epoch') or 0:.2f}", f"elapsed {_fmt_secs(elapsed)}", f"ETA {_fmt_secs(eta)}"]
    if tokens:
        parts.append(f"tokens {int(tokens):,}")
    if peak:
        parts.append(f"peak memory {peak / 2**30:.2f} GiB")
    err = ""
    if st.get("error"):
        err = f"<pre class='run-error'>{html.escape(st['error'])}</pre>"
    return (f"<div id='progress-info' data-state='{state}' data-step='{step}' data-total='{total}'>"
            f"<progress value='{step}' max='{total}' style='width:100%'></progress>"
            f"<div>{pct:.0f}% · {' · '.join(parts)}</div>{err}</div>")


def log_tail(run_dir: Path, lines: int = 30) -> str:
    try:
        with open(run_dir / "train.log", "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def figures(records, smoothing, log_y, x):
    loss = charts.loss_figure(records, smoothing, x, log_y)
    sig = charts.signals_figure(records, x)
    meth = charts.method_figure(records, x)
    return (loss, gr.update(value=sig, visible=sig is not None), gr.update(value=meth, visible=meth is not None))


def poll(run_id, offset, records, smoothing, log_y, x, runs_dir):
    """One timer tick: read what was appended, redraw, stop polling once the run ended."""
    if not run_id:
        return (offset, records, progress_html({}, []), *figures([], smoothing, log_y, x), "",
                gr.Timer(active=False))
    run_dir = jobs.run_path(run_id, runs_dir)
    tail = MetricsTail(run_dir / "metrics.jsonl", offset)
    new = tail.read_new()
    records = records + new
    st = jobs.status(run_dir)
    done = st.get("state") in jobs.TERMINAL and not new
    return (tail.offset, records, progress_html(st, records), *figures(records, smoothing, log_y, x),
            log_tail(run_dir), gr.Timer(active=not done))


def build_section(demo: gr.Blocks, fields: dict, spec, settings) -> None:
    """The Train tab's controls and live view; `fields` are every tab's spec widgets."""
    runs_dir = settings.runs_dir
    fields.update(build(spec, runs_dir))
    paths, comps = list(fields), list(fields.values())
    problems = gr.Markdown(form.problems_markdown(spec.validate()), elem_id="problems")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="start")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
        stop_save = gr.Button("Stop and save", elem_id="stop-save")
        resume = gr.Button("Resume", elem_id="resume")
    message = gr.Markdown("", elem_id="train-message")
    with gr.Row():
        run_pick = gr.Dropdown(choices=run_choices(runs_dir), label="Run", elem_id="run-pick",
                               interactive=True, scale=4)
        refresh = gr.Button("↻ Runs", scale=1)
    progress = gr.HTML(progress_html({}, []), elem_id="progress")
    with gr.Row():
        smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="smoothing")
        log_y = gr.Checkbox(False, label="log scale")
        x_axis = gr.Radio(["step", "tokens"], value="step", label="x axis")
    loss_plot = gr.Plot(elem_id="loss-plot", label="Loss")
    signals_plot = gr.Plot(elem_id="signals-plot", visible=False, label="Signals")
    method_plot = gr.Plot(elem_id="method-plot", visible=False, label="Method metrics")
    log_box = gr.Textbox(label="train.log (last lines)", lines=8, max_lines=8, elem_id="train-log")
    run_id, offset, records = gr.State(""), gr.State(0), gr.State([])
    timer = gr.Timer(POLL_SECONDS, active=False)

    def on_edit(*values):
        try:
            s = form.spec_from_values(paths, values)
            found = s.validate()
        except SpecError as exc:
            found = [exc]
            return f"**Fix before starting:**\n- `{exc.field}`: {exc.fix}", gr.update(interactive=False)
        return form.problems_markdown(found), gr.update(interactive=not found)

    gr.on([c.change for c in comps], on_edit, inputs=comps, outputs=[problems, start],
          show_progress="hidden", api_visibility="private")

    def on_start(*values):
        try:
            s = form.spec_from_values(paths, values)
            run_dir = jobs.launch(s, runs_dir)
        except (SpecError, jobs.JobError) as exc:
            raise gr.Error(str(exc)) from None
        rid = run_dir.name
        return (rid, 0, [], gr.Timer(active=True), f"Started **{rid}**",
                gr.update(choices=run_choices(runs_dir), value=rid))

    start.click(on_start, comps, [run_id, offset, records, timer, message, run_pick], api_name="start")

    def on_stop(rid, save):
        if not rid:
            return "No run to stop."
        st = jobs.stop(jobs.run_path(rid, runs_dir), save=save)
        return f"Run {rid}: {st.get('state')}"

    stop.click(lambda rid: on_stop(rid, False), run_id, message, api_name="stop")
    stop_save.click(lambda rid: on_stop(rid, True), run_id, message, api_name="stop_and_save")

    def on_resume(rid):
        if not rid:
            raise gr.Error("Pick a run to resume.")
        try:
            jobs.resume(jobs.run_path(rid, runs_dir))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        return gr.Timer(active=True), f"Resumed **{rid}**"

    resume.click(on_resume, run_id, [timer, message], api_name="resume")

    def attach(rid):
        return rid or "", 0, [], gr.Timer(active=bool(rid))

    run_pick.input(attach, run_pick, [run_id, offset, records, timer], api_visibility="private")
    refresh.click(lambda: gr.update(choices=run_choices(runs_dir)), None, run_pick,
                  api_visibility="private")
    poll_outputs = [offset, records, progress, loss_plot, signals_plot, method_plot, log_box, timer]

    def tick(rid, off, recs, sm, ly, xa):
        return poll(rid, off, recs, sm, ly, xa, runs_dir)

    timer.tick(tick, [run_id, offset, records, smoothing, log_y, x_axis], poll_outputs,
               show_progress="hidden", api_visibility="private")
    for ctl in (smoothing, log_y, x_axis):
        ctl.change(lambda rid, off, recs, sm, ly, xa: figures(recs, sm, ly, xa),
                   [run_id, offset, records, smoothing, log_y, x_axis], [loss_plot, signals_plot, method_plot],
                   show_progress="hidden", api_visibility="private")

    def reattach():
        """On page load: watch the newest run that is still going (else nothing)."""
        for r in jobs.list_runs(runs_dir):
            if r["state"] in ("running", "queued"):
                return r["run_id"], 0, [], gr.Timer(active=True), gr.update(
                    choices=run_choices(runs_dir), value=r["run_id"])
        return "", 0, [], gr.Timer(active=False), gr.update(choices=run_choices(runs_dir))

    demo.load(reattach, None, [run_id, offset, records, timer, run_pick], api_visibility="private")
