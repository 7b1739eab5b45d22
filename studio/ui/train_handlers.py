"""The Train tab's handlers: start/stop/resume, the polling tick, history actions.
Layout is studio.ui.train_tab; what is shown is studio.ui.train_view."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from studio import charts, jobs, policy, reward_charts
from studio.data.preflight import data_problems
from studio.launch import cli_command
from studio.metrics import MetricsTail, read_all
from studio.spec import RunSpec, SpecError
from studio.ui import form
from studio.ui.train_view import (GOING, button_states, header_html, history_rows, log_tail, progress_html,
                                  run_choices)

PRIVATE = dict(api_visibility="private")
FOLLOW_LOG = """() => { setTimeout(() => { const t = document.querySelector('#train-log textarea');
  if (t) t.scrollTop = t.scrollHeight; }, 30); }"""


def figures(records, smoothing, log_y, x):
    """(loss, signals, method metrics, rewards, reward warning): the charts a run has."""
    loss = charts.loss_figure(records, smoothing, x, log_y)
    sig = charts.signals_figure(records, x)
    meth = charts.method_figure(records, x)
    rew = reward_charts.reward_figure(records, x)  # GRPO/PPO only: None for other methods
    warning = reward_charts.zero_std_warning(records)
    return (loss, gr.update(value=sig, visible=sig is not None), gr.update(value=meth, visible=meth is not None),
            gr.update(value=rew, visible=rew is not None), f"⚠️ {warning}" if warning else "")


def buttons(st: dict, run_dir: Path | None) -> tuple:
    stop, stop_save, resume = button_states(st, run_dir)
    return gr.update(interactive=stop), gr.update(interactive=stop_save), gr.update(interactive=resume)


def poll(run_id, watched, offset, records, shown_state, smoothing, log_y, x, runs_dir):
    """One timer tick: read what was appended, redraw only if something was, refresh the
    history, the run list (its labels carry the state) and the buttons when the state
    changed, and stop polling once the run has ended.

    `watched` names the run that offset/records/shown_state belong to. Ticks run beside
    other events, so a tick of the previous run can finish after Start or the picker
    switched runs and write that run's stream back; the next tick then starts over."""
    keep = gr.skip()
    if watched != run_id:
        offset, records, shown_state = 0, [], ""
    if not run_id:
        return ("", offset, records, "", progress_html({}, []), *figures([], smoothing, log_y, x), "",
                keep, keep, keep, gr.Timer(active=False), *buttons({}, None), header_html("", {}, []), keep)
    run_dir = jobs.run_path(run_id, runs_dir)
    if not run_dir.exists():  # deleted from another browser
        choices = gr.update(choices=run_choices(runs_dir))
        return (run_id, 0, [], "", progress_html({}, []), *figures([], smoothing, log_y, x), "",
                gr.update(value=history_rows(runs_dir)), choices, choices, gr.Timer(active=False),
                *buttons({}, None), header_html("", {}, []), gr.update(interactive=True))
    tail = MetricsTail(run_dir / "metrics.jsonl", offset)
    new = tail.read_new()
    records = records + new
    st = jobs.status(run_dir)
    state = st.get("state")
    done = state in jobs.TERMINAL and not new
    first = not shown_state  # the first tick after attaching draws even an empty chart
    plots = figures(records, smoothing, log_y, x) if (new or first) else (keep,) * 5
    changed = state != shown_state
    history = gr.update(value=history_rows(runs_dir)) if changed else keep
    choices = run_choices(runs_dir) if changed else None
    picker = gr.update(choices=choices) if changed else keep
    # the run picker keeps its value; only its labels (with the state) are rebuilt
    run_pick = gr.update(choices=choices, value=run_id) if changed else keep
    btns = buttons(st, run_dir) if changed else (keep,) * 3
    # Start is off from its click until the run shows up here (no second run from a double click)
    start = gr.update(interactive=True) if first else keep
    return (run_id, tail.offset, records, state, progress_html(st, records), *plots, log_tail(run_dir),
            history, picker, run_pick, gr.Timer(active=not done), *btns, header_html(run_id, st, records), start)


def noted_paths() -> list[str]:
    """The fields whose info line shows their problem (their usual line is FIELD_INFO's)."""
    from studio.ui import train_tab as t  # the layout module imports this one

    return t.SPEED_PATHS + t.GUARD_PATHS + t.FEDERATION_PATHS + t.DECENTRALIZED_PATHS


def export_spec(run_dir: Path) -> tuple[str, str]:
    """(a downloadable copy of the run's spec.yaml, the CLI command that rebuilds it)."""
    spec = RunSpec.load(run_dir / "spec.yaml")
    out = Path(tempfile.gettempdir()) / "studio-export" / run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"{run_dir.name}.yaml"
    shutil.copyfile(run_dir / "spec.yaml", dst)
    return str(dst), (f"# this run's spec file:\npython -m studio train {run_dir / 'spec.yaml'}\n"
                      f"# or the default recipe with the differences:\n{cli_command(spec)}")


def start_run(s: RunSpec, settings) -> tuple[str, str]:
    """Launch `s`; (run id, the message: started, or queued behind the run using the device)."""
    runs_dir = settings.runs_dir
    policy.enforce(s, settings)  # before a run directory exists
    ahead = [r["run_id"] for r in jobs.list_runs(runs_dir) if r["state"] in GOING]
    rid = jobs.launch(s, runs_dir).name
    if ahead:
        return rid, (f"Queued **{rid}**: it starts when {', '.join(f'**{a}**' for a in ahead[:3])} "
                     "finish (one run uses the device at a time).")
    return rid, f"Started **{rid}**"


def wire(demo: gr.Blocks, fields: dict, w: dict, settings, header=None) -> None:
    header = header if header is not None else gr.HTML(visible=False)
    w["header"] = header
    _wire_edit_and_start(fields, w, settings)
    _wire_stop_resume(w, settings)
    _wire_poll(demo, w, settings)
    _wire_history(fields, w, settings)


def field_notes(found, paths: list[str]) -> list:
    """An info-line update per field of `paths`: the first problem naming it (⚠, next to
    the box, e.g. Liger refused on a machine without CUDA), else the field's usual line."""
    messages: dict[str, str] = {}
    for p in found:
        messages.setdefault(p.field, p.message)
    return [gr.update(info=f"⚠ {messages[path]}" if path in messages else (form.FIELD_INFO.get(path) or ""))
            for path in paths]


def _wire_notes(fields: dict, w: dict, settings) -> None:
    """The scale-out explanation for the spec as it stands, and each option's problem in
    its own info line (a handler apart from on_edit: no data read, Start untouched)."""
    from studio.scaleout.help import scaleout_help  # pure: no torch

    paths, comps = list(fields), list(fields.values())
    noted = [p for p in noted_paths() if p in fields]
    helps = [w["scaleout_help"]] if "scaleout_help" in w else []

    def on_notes(*values):
        try:
            s = form.spec_from_values(paths, values)
        except SpecError:  # on_edit names it; these keep what they showed
            return [gr.skip()] * (len(helps) + len(noted))
        found = s.validate() + policy.problems(s, settings)
        return [scaleout_help(s)] * len(helps) + field_notes(found, noted)

    gr.on([c.change for c in comps], on_notes, inputs=comps, outputs=[*helps, *[fields[p] for p in noted]],
          show_progress="hidden", **PRIVATE)


def _wire_edit_and_start(fields: dict, w: dict, settings) -> None:
    paths, comps = list(fields), list(fields.values())
    _wire_notes(fields, w, settings)

    def on_edit(*values):
        try:
            s = form.spec_from_values(paths, values)
            found = s.validate() + policy.problems(s, settings)  # what this server lets a client turn on
            # a sample of the data read against the method: Start stays off with the reason
            found = found or data_problems(s)
        except SpecError as exc:
            return (f"**Fix before starting:**\n- **{form.tab_of(exc.field)} tab** · `{exc.field}`: {exc.fix}",
                    gr.update(interactive=False))
        return form.problems_markdown(found), gr.update(interactive=not found)

    gr.on([c.change for c in comps], on_edit, inputs=comps, outputs=[w["problems"], w["start"]],
          show_progress="hidden", **PRIVATE)

    def on_start(*values):
        try:
            rid, said = start_run(form.spec_from_values(paths, values), settings)
        except SpecError as exc:  # the tab first: that is where the person goes to fix it
            raise gr.Error(f"{form.tab_of(exc.field)} tab: {exc}") from None
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        return (rid, 0, [], "", gr.Timer(active=True), said,
                gr.update(choices=run_choices(settings.runs_dir), value=rid), gr.update(interactive=False))

    # trigger_mode="once": a double click while the first launch is pending starts one run;
    # Start then stays off until the first tick shows the new run (poll)
    w["start"].click(on_start, comps, [w["run_id"], w["offset"], w["records"], w["shown_state"], w["timer"],
                                       w["message"], w["run_pick"], w["start"]], api_name="start",
                     trigger_mode="once")
    w["on_start"] = on_start


def _wire_stop_resume(w: dict, settings) -> None:
    runs_dir = settings.runs_dir

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

    w["stop"].click(lambda rid: on_stop(rid, False), w["run_id"], [w["message"], w["timer"]], api_name="stop")
    w["stop_save"].click(lambda rid: on_stop(rid, True), w["run_id"], [w["message"], w["timer"]],
                         api_name="stop_and_save")

    def on_resume(rid, steps, with_opt):
        if not rid:
            raise gr.Error("Pick a run to resume.")
        try:
            jobs.resume(jobs.run_path(rid, runs_dir), int(steps or 0) or None, bool(with_opt))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        how = "with" if with_opt else "without"
        # "" as the shown state: the next tick redraws and sets the buttons for 'queued'
        return gr.Timer(active=True), f"Resumed **{rid}** {how} optimizer state", ""

    w["resume"].click(on_resume, [w["run_id"], w["resume_steps"], w["resume_opt"]],
                      [w["timer"], w["message"], w["shown_state"]], api_name="resume", trigger_mode="once")


def _wire_poll(demo: gr.Blocks, w: dict, settings) -> None:
    runs_dir = settings.runs_dir
    reset = [w["offset"], w["records"], w["shown_state"]]  # watching another run starts its stream over

    def attach(rid):
        return rid or "", 0, [], "", gr.Timer(active=bool(rid))

    w["run_pick"].input(attach, w["run_pick"], [w["run_id"], *reset, w["timer"]], **PRIVATE)
    poll_outputs = [w["watched"], *reset, w["progress"], w["loss_plot"], w["signals_plot"], w["method_plot"],
                    w["reward_plot"], w["reward_warning"], w["log_box"], w["history"], w["compare_pick"],
                    w["run_pick"], w["timer"], w["stop"], w["stop_save"], w["resume"], w["header"], w["start"]]

    def tick(rid, seen, off, recs, shown, sm, ly, xa):
        return poll(rid, seen, off, recs, shown, sm, ly, xa, runs_dir)

    # ticks only read files: every browser's ticks run side by side, none waits for another's
    w["timer"].tick(tick, [w["run_id"], w["watched"], w["offset"], w["records"], w["shown_state"], w["smoothing"],
                           w["log_y"], w["x_axis"]], poll_outputs, show_progress="hidden", concurrency_limit=None,
                    **PRIVATE)

    # the log box shows the file's end even when long lines wrap (autoscroll alone leaves
    # the last wrapped lines under the fold)
    w["log_box"].change(None, None, None, js=FOLLOW_LOG, **PRIVATE)

    def reattach():
        """On page load: watch the newest run that is still going, else the newest run
        (its last state shows, with buttons to match; one tick, the timer then stops)."""
        choices = run_choices(runs_dir)
        lists = (gr.update(choices=choices), history_rows(runs_dir))
        rows = jobs.list_runs(runs_dir)
        going = [r for r in rows if r["state"] == "running"] + [r for r in rows if r["state"] == "queued"]
        # nothing going: the newest run, so a reload after the end still shows it (and its chart)
        for r in (going or rows)[:1]:
            return (r["run_id"], 0, [], "", gr.Timer(active=True), gr.update(choices=choices, value=r["run_id"]),
                    *lists)
        return "", 0, [], "", gr.Timer(active=False), gr.update(choices=choices), *lists

    demo.load(reattach, None, [w["run_id"], *reset, w["timer"], w["run_pick"], w["compare_pick"], w["history"]],
              **PRIVATE)


def _wire_history(fields: dict, w: dict, settings) -> None:
    runs_dir = settings.runs_dir

    def on_refresh():
        choices = run_choices(runs_dir)
        return gr.update(choices=choices), gr.update(choices=choices), history_rows(runs_dir)

    w["refresh"].click(on_refresh, None, [w["run_pick"], w["compare_pick"], w["history"]], **PRIVATE)

    def compared(picked, sm, ly, xa):
        runs = {}
        for rid in picked or []:
            try:
                runs[rid] = read_all(jobs.run_path(rid, runs_dir))
            except jobs.JobError:
                continue
        return charts.loss_figure([], sm, xa, ly, runs=runs) if runs else None

    view = [w["smoothing"], w["log_y"], w["x_axis"]]
    plots = [w["loss_plot"], w["signals_plot"], w["method_plot"], w["reward_plot"], w["reward_warning"]]
    for ctl in view:
        # the records may still be another run's until the next tick (see poll)
        ctl.change(lambda rid, seen, recs, sm, ly, xa: figures(recs if seen == rid else [], sm, ly, xa),
                   [w["run_id"], w["watched"], w["records"], *view], plots, show_progress="hidden", **PRIVATE)
        ctl.change(compared, [w["compare_pick"], *view], w["compare_plot"], show_progress="hidden", **PRIVATE)
    w["compare_pick"].change(compared, [w["compare_pick"], *view], w["compare_plot"], show_progress="hidden",
                             **PRIVATE)
    _wire_run_actions(fields, w, settings)


def _wire_run_actions(fields: dict, w: dict, settings) -> None:
    """Delete (with a confirmation), use as base, export: they act on the picked run."""
    runs_dir = settings.runs_dir
    reset = [w["offset"], w["records"], w["shown_state"]]

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

    w["delete"].click(ask_delete, w["run_id"], [w["confirm_row"], w["confirm_text"]], **PRIVATE)
    w["cancel"].click(lambda: gr.update(visible=False), None, w["confirm_row"], **PRIVATE)

    def do_delete(rid):
        try:
            jobs.delete_run(picked_dir(rid))
        except jobs.JobError as exc:
            raise gr.Error(str(exc)) from None
        choices = run_choices(runs_dir)
        return ("", 0, [], "", gr.update(visible=False), f"Deleted {rid}.", gr.update(choices=choices, value=None),
                gr.update(choices=choices, value=[]), history_rows(runs_dir), progress_html({}, []), None,
                *buttons({}, None), header_html("", {}, []))

    w["confirm"].click(do_delete, w["run_id"], [w["run_id"], *reset, w["confirm_row"], w["message"], w["run_pick"],
                                                w["compare_pick"], w["history"], w["progress"], w["loss_plot"],
                                                w["stop"], w["stop_save"], w["resume"], w["header"]], **PRIVATE)
    base_outputs = [fields[p] for p in ("model.source", "model.name_or_path") if p in fields]

    def use_as_base(rid):
        run_dir = picked_dir(rid)
        if not (run_dir / "final").exists():
            raise gr.Error(f"{rid} has no final model yet: let it finish, or stop it with 'Stop and save'.")
        return "pretrained", str(run_dir), (f"Model tab: source = pretrained, name_or_path = `{run_dir}`. "
                                            "Choose the next method (e.g. SFT, DPO) and Start.")

    w["use_base"].click(use_as_base, w["run_id"], base_outputs + [w["message"]], **PRIVATE)
    def on_export(rid):
        path, command = export_spec(picked_dir(rid))
        return gr.update(value=path, visible=True), gr.update(value=command, visible=True)

    w["export"].click(on_export, w["run_id"], [w["export_file"], w["cli_box"]], **PRIVATE)
