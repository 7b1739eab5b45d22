"""Train tab: start/stop/resume, live charts, progress, the log, run history and compare.

All per-browser values live in gr.State (the run being watched, the byte offset into
its metrics.jsonl, the records read so far); everything else is read from the run
directory, so a reload or a second browser reattaches to the same run."""
from __future__ import annotations

import html
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from studio import charts, jobs, policy
from studio.launch import cli_command
from studio.metrics import MetricsTail, read_all
from studio.data.preflight import data_problems
from studio.spec import RunSpec, SpecError
from studio.ui import form

PATHS = ["name", "train.max_steps", "train.batch_size", "train.grad_accum", "train.learning_rate",
         "train.optimizer", "train.scheduler", "train.warmup_steps", "train.weight_decay",
         "train.max_grad_norm", "train.seed", "train.precision", "train.gradient_checkpointing",
         "train.log_every", "train.eval_every", "train.eval_steps", "train.save_every",
         "train.save_best_only", "train.epochs", "train.report_to"]
SCALE_PATHS = ["train.num_processes", "train.nnodes", "train.node_rank", "train.master_addr", "train.master_port"]
# short enough that a new metric reaches the chart in ~1 s; idle ticks send no figure
POLL_SECONDS = 0.5
HISTORY_HEADERS = ["run", "name", "method", "state", "step", "final loss", "duration"]


def build(spec, runs_dir) -> dict:
    fields = {"name": gr.Textbox(value=spec.name, label="run name", elem_id="name")}
    with gr.Accordion("Training settings", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, PATHS[1:]))
    with gr.Accordion("Scale out (processes, nodes, DeepSpeed / FSDP)", open=False):
        with gr.Row():
            fields.update(form.widgets(spec, SCALE_PATHS[:1], info="per node; > 1 launches through accelerate"))
            fields.update(form.widgets(spec, ["train.distributed"], info="ddp, DeepSpeed ZeRO-2/3, or FSDP"))
            fields.update(form.widgets(spec, SCALE_PATHS[1:]))
    return fields


def run_choices(runs_dir) -> list[tuple[str, str]]:
    return [(f"{r['run_id']} · {r['state']} · {r['method']}", r["run_id"]) for r in jobs.list_runs(runs_dir)]


def _fmt_secs(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def history_rows(runs_dir) -> list[list]:
    rows = []
    for r in jobs.list_runs(runs_dir):
        loss = f"{r['last_loss']:.4f}" if isinstance(r["last_loss"], (int, float)) else "–"
        rows.append([r["run_id"], r["name"], r["method"], r["state"], f"{r['step']}/{r['total']}", loss,
                     _fmt_secs(r["duration_s"])])
    return rows or [[""] * len(HISTORY_HEADERS)]


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
    position = st.get("queue_position") if state == "queued" else None
    extra = f" · position {position} in the queue (waiting for the device)" if position else ""
    peak = st.get("peak_memory_bytes")
    parts = [f"<b>{html.escape(str(state))}</b>{extra}", f"step {step}/{total}",
             f"epoch {st.get('epoch') or 0:.2f}", f"elapsed {_fmt_secs(elapsed)}", f"ETA {_fmt_secs(eta)}"]
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


def poll(run_id, watched, offset, records, shown_state, smoothing, log_y, x, runs_dir):
    """One timer tick: read what was appended, redraw only if something was, refresh the
    history when the state changed, and stop polling once the run has ended.

    `watched` names the run that offset/records/shown_state belong to. Ticks run beside
    other events, so a tick of the previous run can finish after Start or the picker
    switched runs and write that run's stream back; the next tick then starts over."""
    keep = gr.skip()
    if watched != run_id:
        offset, records, shown_state = 0, [], ""
    if not run_id:
        return ("", offset, records, "", progress_html({}, []), *figures([], smoothing, log_y, x), "",
                keep, keep, gr.Timer(active=False))
    run_dir = jobs.run_path(run_id, runs_dir)
    if not run_dir.exists():  # deleted from another browser
        return (run_id, 0, [], "", progress_html({}, []), *figures([], smoothing, log_y, x), "",
                gr.update(value=history_rows(runs_dir)), gr.update(choices=run_choices(runs_dir)),
                gr.Timer(active=False))
    tail = MetricsTail(run_dir / "metrics.jsonl", offset)
    new = tail.read_new()
    records = records + new
    st = jobs.status(run_dir)
    state = st.get("state")
    done = state in jobs.TERMINAL and not new
    first = not shown_state  # the first tick after attaching draws even an empty chart
    plots = figures(records, smoothing, log_y, x) if (new or first) else (keep, keep, keep)
    changed = state != shown_state
    history = gr.update(value=history_rows(runs_dir)) if changed else keep
    picker = gr.update(choices=run_choices(runs_dir)) if changed else keep
    return (run_id, tail.offset, records, state, progress_html(st, records), *plots, log_tail(run_dir),
            history, picker, gr.Timer(active=not done))


def export_spec(run_dir: Path) -> tuple[str, str]:
    """(a downloadable copy of the run's spec.yaml, the CLI command that rebuilds it)."""
    spec = RunSpec.load(run_dir / "spec.yaml")
    out = Path(tempfile.gettempdir()) / "studio-export" / run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"{run_dir.name}.yaml"
    shutil.copyfile(run_dir / "spec.yaml", dst)
    return str(dst), (f"# this run's spec file:\npython -m studio train {run_dir / 'spec.yaml'}\n"
                      f"# or the default recipe with the differences:\n{cli_command(spec)}")


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
    with gr.Row():
        resume_steps = gr.Number(0, precision=0, label="resume: new max steps", elem_id="resume-steps",
                                 info="0 = keep the run's max_steps")
        resume_opt = gr.Checkbox(True, label="resume with optimizer state", elem_id="resume-optimizer")
    message = gr.Markdown("", elem_id="train-message")
    with gr.Row():
        run_pick = gr.Dropdown(choices=run_choices(runs_dir), value=None, label="Run", elem_id="run-pick",
                               interactive=True, scale=4)
        refresh = gr.Button("↻ Runs", scale=1, elem_id="refresh-runs")
    progress = gr.HTML(progress_html({}, []), elem_id="progress")
    with gr.Row():
        smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="smoothing", elem_id="smoothing")
        log_y = gr.Checkbox(False, label="log scale", elem_id="log-scale")
        x_axis = gr.Radio(["step", "tokens"], value="step", label="x axis", elem_id="x-axis")
    loss_plot = gr.Plot(elem_id="loss-plot", label="Loss")
    signals_plot = gr.Plot(elem_id="signals-plot", visible=False, label="Signals")
    method_plot = gr.Plot(elem_id="method-plot", visible=False, label="Method metrics")
    log_box = gr.Textbox(label="train.log (last lines)", lines=8, max_lines=8, elem_id="train-log")
    with gr.Accordion("Run history and comparison", open=True):
        history = gr.Dataframe(value=history_rows(runs_dir), headers=HISTORY_HEADERS, interactive=False,
                               elem_id="run-history", wrap=True)
        compare_pick = gr.Dropdown(choices=run_choices(runs_dir), value=[], multiselect=True,
                                   label="Compare runs (loss curves overlaid)", elem_id="compare-pick")
        compare_plot = gr.Plot(elem_id="compare-plot", label="Compared loss")
        with gr.Row():
            delete = gr.Button("Delete run…", variant="stop", elem_id="delete-run", size="sm")
            use_base = gr.Button("Use as base of a new run", elem_id="use-as-base", size="sm")
            export = gr.Button("Export spec", elem_id="export-spec", size="sm")
        with gr.Row(visible=False) as confirm_row:
            confirm_text = gr.Markdown("", elem_id="delete-question")
            confirm = gr.Button("Yes, delete it", variant="stop", elem_id="delete-confirm", size="sm")
            cancel = gr.Button("Cancel", elem_id="delete-cancel", size="sm")
        export_file = gr.File(label="spec.yaml", elem_id="export-file", interactive=False)
        cli_box = gr.Code(label="Equivalent CLI command", language="shell", elem_id="cli-command")
    run_id, offset, records, shown_state = gr.State(""), gr.State(0), gr.State([]), gr.State("")
    watched = gr.State("")  # the run offset/records/shown_state were read from (see poll)
    timer = gr.Timer(POLL_SECONDS, active=False)
    reset = [offset, records, shown_state]  # watching another run starts its stream over

    def on_edit(*values):
        try:
            s = form.spec_from_values(paths, values)
            found = s.validate() + policy.problems(s, settings)  # what this server lets a client turn on
            # a sample of the data read against the method: Start stays off with the reason
            found = found or data_problems(s)
        except SpecError as exc:
            return f"**Fix before starting:**\n- `{exc.field}`: {exc.fix}", gr.update(interactive=False)
        return form.problems_markdown(found), gr.update(interactive=not found)

    gr.on([c.change for c in comps], on_edit, inputs=comps, outputs=[problems, start],
          show_progress="hidden", api_visibility="private")

    def on_start(*values):
        try:
            s = form.spec_from_values(paths, values)
            policy.enforce(s, settings)  # before a run directory exists
            run_dir = jobs.launch(s, runs_dir)
        except (SpecError, jobs.JobError) as exc:
            raise gr.Error(str(exc)) from None
        rid = run_dir.name
        return (rid, 0, [], "", gr.Timer(active=True), f"Started **{rid}**",
                gr.update(choices=run_choices(runs_dir), value=rid))

    start.click(on_start, comps, [run_id, *reset, timer, message, run_pick], api_name="start")

    def on_stop(rid, save):
        if not rid:
            return "No run to stop.", gr.Timer(active=False)
        run_dir = jobs.run_path(rid, runs_dir)
        st = jobs.stop(run_dir, save=save)
        saved = ""
        if save:
            ckpt = jobs.latest_checkpoint(run_dir)
            saved = (f"; checkpoint `{ckpt.name}` and final/ saved" if ckpt and (run_dir / "final").exists()
                     else "; nothing was saved (the run had not started training)")
        # one more tick shows the final state and the last points
        return f"Run {rid}: {st.get('state')}{saved}", gr.Timer(active=True)

    stop.click(lambda rid: on_stop(rid, False), run_id, [message, timer], api_name="stop")
    stop_save.click(lambda rid: on_stop(rid, True), run_id, [message, timer], api_name="stop_and_save")

    def on_resume(rid, steps, with_opt):
        if not rid:
            raise gr.Error("Pick a run to resume.")
        try:
            jobs.resume(jobs.run_path(rid, runs_dir), int(steps or 0) or None, bool(with_opt))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        how = "with" if with_opt else "without"
        return gr.Timer(active=True), f"Resumed **{rid}** {how} optimizer state"

    resume.click(on_resume, [run_id, resume_steps, resume_opt], [timer, message], api_name="resume")

    def attach(rid):
        return rid or "", 0, [], "", gr.Timer(active=bool(rid))

    run_pick.input(attach, run_pick, [run_id, *reset, timer], api_visibility="private")

    def on_refresh():
        choices = run_choices(runs_dir)
        return gr.update(choices=choices), gr.update(choices=choices), history_rows(runs_dir)

    refresh.click(on_refresh, None, [run_pick, compare_pick, history], api_visibility="private")
    poll_outputs = [watched, offset, records, shown_state, progress, loss_plot, signals_plot, method_plot, log_box,
                    history, compare_pick, timer]

    def tick(rid, seen, off, recs, shown, sm, ly, xa):
        return poll(rid, seen, off, recs, shown, sm, ly, xa, runs_dir)

    # ticks only read files: every browser's ticks run side by side, none waits for another's
    timer.tick(tick, [run_id, watched, offset, records, shown_state, smoothing, log_y, x_axis], poll_outputs,
               show_progress="hidden", api_visibility="private", concurrency_limit=None)

    def compared(picked, sm, ly, xa):
        runs = {}
        for rid in picked or []:
            try:
                runs[rid] = read_all(jobs.run_path(rid, runs_dir))
            except jobs.JobError:
                continue
        return charts.loss_figure([], sm, xa, ly, runs=runs) if runs else None

    for ctl in (smoothing, log_y, x_axis):
        # the records may still be another run's until the next tick (see poll)
        ctl.change(lambda rid, seen, recs, sm, ly, xa: figures(recs if seen == rid else [], sm, ly, xa),
                   [run_id, watched, records, smoothing, log_y, x_axis], [loss_plot, signals_plot, method_plot],
                   show_progress="hidden", api_visibility="private")
        ctl.change(compared, [compare_pick, smoothing, log_y, x_axis], compare_plot,
                   show_progress="hidden", api_visibility="private")
    compare_pick.change(compared, [compare_pick, smoothing, log_y, x_axis], compare_plot,
                        show_progress="hidden", api_visibility="private")

    # -- acting on the picked run ----------------------------------------------------
    def picked_dir(rid) -> Path:
        if not rid:
            raise gr.Error("Pick a run first (the Run list above).")
        try:
            return jobs.run_path(rid, runs_dir)
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None

    def ask_delete(rid):
        picked_dir(rid)
        return gr.update(visible=True), (f"Delete **{rid}**? Its checkpoints and final model go too; "
                                         "this cannot be undone.")

    delete.click(ask_delete, run_id, [confirm_row, confirm_text], api_visibility="private")
    cancel.click(lambda: gr.update(visible=False), None, confirm_row, api_visibility="private")

    def do_delete(rid):
        try:
            jobs.delete_run(picked_dir(rid))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        choices = run_choices(runs_dir)
        return ("", 0, [], "", gr.update(visible=False), f"Deleted {rid}.", gr.update(choices=choices, value=None),
                gr.update(choices=choices, value=[]), history_rows(runs_dir), progress_html({}, []), None)

    confirm.click(do_delete, run_id, [run_id, *reset, confirm_row, message, run_pick, compare_pick, history,
                                      progress, loss_plot], api_visibility="private")

    base_outputs = [fields[p] for p in ("model.source", "model.name_or_path") if p in fields]

    def use_as_base(rid):
        run_dir = picked_dir(rid)
        if not (run_dir / "final").exists():
            raise gr.Error(f"{rid} has no final model yet: let it finish, or stop it with 'Stop and save'.")
        return "pretrained", str(run_dir), (f"Model tab: source = pretrained, name_or_path = `{run_dir}`. "
                                            "Choose the next method (e.g. SFT, DPO) and Start.")

    use_base.click(use_as_base, run_id, base_outputs + [message], api_visibility="private")
    export.click(lambda rid: export_spec(picked_dir(rid)), run_id, [export_file, cli_box],
                 api_visibility="private")

    def reattach():
        """On page load: watch the newest run that is still going (else nothing)."""
        choices = run_choices(runs_dir)
        lists = (gr.update(choices=choices), history_rows(runs_dir))
        rows = jobs.list_runs(runs_dir)
        going = [r for r in rows if r["state"] == "running"] + [r for r in rows if r["state"] == "queued"]
        for r in going[:1]:
            return (r["run_id"], 0, [], "", gr.Timer(active=True),
                        gr.update(choices=choices, value=r["run_id"]), *lists)
        return "", 0, [], "", gr.Timer(active=False), gr.update(choices=choices), *lists

    demo.load(reattach, None, [run_id, *reset, timer, run_pick, compare_pick, history],
              api_visibility="private")
