"""Train tab as a dashboard: controls and progress in one row on top, the loss chart
beside the log, the other charts in a grid, settings and history in tabs below.

Layout (`build`, `build_view`) and handlers (`wire`, studio.ui.train_handlers) are
separate, as in the other tabs. All per-browser values live in gr.State (the run being
watched, the byte offset into its metrics.jsonl, the records read so far); everything
else is read from the run directory, so a reload or a second browser reattaches."""
from __future__ import annotations

import gradio as gr

from studio.ui import form, spec_io
from studio.ui.train_view import (HISTORY_HEADERS, LOG_LINES, history_rows, log_tail, progress_html,  # noqa: F401
                                  run_choices)
from studio.ui.train_handlers import export_spec, figures, poll  # noqa: F401 - public names of this tab

PATHS = ["name", "train.max_steps", "train.batch_size", "train.grad_accum", "train.learning_rate",
         "train.optimizer", "train.scheduler", "train.warmup_steps", "train.weight_decay",
         "train.max_grad_norm", "train.seed", "train.precision", "train.gradient_checkpointing",
         "train.log_every", "train.eval_every", "train.eval_steps", "train.save_every",
         "train.save_best_only", "train.epochs", "train.report_to"]
SCALE_PATHS = ["train.num_processes", "train.nnodes", "train.node_rank", "train.master_addr", "train.master_port"]
# divergence (#17) and held-out tasks scored during training (#21)
GUARD_PATHS = ["train.on_divergence", "train.max_rollbacks", "train.eval_tasks"]
# speed options (#26): the field's own info line carries this machine's refusal (train_handlers)
SPEED_PATHS = ["train.attn_implementation", "train.torch_compile", "train.use_liger_kernel", "train.padding_free",
               "train.group_by_length", "train.tf32"]
FEDERATION_PATHS = [f"train.federation.{n}" for n in ("enabled", "clients", "rounds", "local_steps",
                                                       "client_fraction", "strategy", "proximal_mu", "address")]
DECENTRALIZED_PATHS = [f"train.decentralized.{n}" for n in ("enabled", "peers", "average_every", "host",
                                                             "initial_peers", "averaging_timeout")]
# short enough that a new metric reaches the chart in ~1 s; idle ticks send no figure
POLL_SECONDS = 0.5


def build(spec, runs_dir, name: bool = True, shown: dict | None = None) -> dict:
    """The spec fields this tab owns (the settings accordion; the run name too unless
    the dashboard placed it beside Start). `shown` gains the widgets that only display
    (the scale-out explanation), for the handlers to refresh."""
    from studio.scaleout.help import scaleout_help  # pure: no torch, no engine

    shown = shown if shown is not None else {}
    fields = {"name": gr.Textbox(value=spec.name, label="run name", elem_id="name")} if name else {}
    with gr.Row():
        fields.update(form.widgets(spec, PATHS[1:]))
    with gr.Row(elem_id="train-guard"):
        fields.update(form.widgets(spec, GUARD_PATHS))
    with gr.Group(elem_id="speed-options"):
        gr.Markdown("**Speed** (speed and memory, not results; refused here when this machine cannot run one)")
        with gr.Row():
            fields.update(form.widgets(spec, SPEED_PATHS))
    with gr.Accordion("Scale out (one machine, several GPUs, federated, decentralized)", open=False,
                      elem_id="scale-out"):
        shown["scaleout_help"] = gr.Markdown(scaleout_help(spec), elem_id="scaleout-help")
        gr.Markdown("**Several GPUs** (accelerate)")
        with gr.Row():
            fields.update(form.widgets(spec, SCALE_PATHS[:1], info="per node; > 1 launches through accelerate"))
            fields.update(form.widgets(spec, ["train.distributed"], info="ddp, DeepSpeed ZeRO-2/3, or FSDP"))
            fields.update(form.widgets(spec, SCALE_PATHS[1:]))
        gr.Markdown("**Federated** (Flower: clients send updates, never rows)")
        with gr.Row():
            fields.update(form.widgets(spec, FEDERATION_PATHS))
        gr.Markdown("**Decentralized** (hivemind: peers average through a DHT, no server)")
        with gr.Row():
            fields.update(form.widgets(spec, DECENTRALIZED_PATHS))
    return fields


def _controls(w: dict, fields: dict, spec, runs_dir, problems_md: str) -> None:
    with gr.Column(scale=2, min_width=380):
        with gr.Row(elem_id="train-buttons"):
            # Stop/Resume start disabled: they follow the watched run's state (poll)
            w["start"] = gr.Button("Start", variant="primary", elem_id="start", min_width=70)
            w["stop"] = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, min_width=70)
            w["stop_save"] = gr.Button("Stop and save", elem_id="stop-save", interactive=False, min_width=130)
            w["resume"] = gr.Button("Resume", elem_id="resume", interactive=False, min_width=80)
        with gr.Row():
            fields["name"] = gr.Textbox(value=spec.name, label="run name", elem_id="name", scale=2, min_width=120)
            w["run_pick"] = gr.Dropdown(choices=run_choices(runs_dir), value=None, label="Run", elem_id="run-pick",
                                        interactive=True, scale=4)
            w["refresh"] = gr.Button("↻ Runs", scale=1, elem_id="refresh-runs", min_width=60, size="sm")
        with gr.Row(equal_height=True):
            w["resume_steps"] = gr.Number(0, precision=0, label="resume: new max steps (0 = keep)",
                                          elem_id="resume-steps", scale=2, min_width=140)
            w["resume_opt"] = gr.Checkbox(True, label="resume with optimizer state", elem_id="resume-optimizer",
                                          scale=2, min_width=140)
        w["problems"] = gr.Markdown(problems_md, elem_id="problems")
        w["message"] = gr.Markdown("", elem_id="train-message")
    with gr.Column(scale=3, min_width=420):
        w["progress"] = gr.HTML(progress_html({}, []), elem_id="progress")
        w["log_box"] = gr.Textbox(label="train.log (last lines; follows the end)", lines=LOG_LINES, max_lines=LOG_LINES,
                                  elem_id="train-log", autoscroll=True, interactive=False)


def _charts(w: dict) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420):
            w["loss_plot"] = gr.Plot(elem_id="loss-plot", label="Loss")
        with gr.Column(scale=2, min_width=300):
            with gr.Row():
                w["smoothing"] = gr.Slider(0, 0.99, value=0.6, step=0.01, label="smoothing", elem_id="smoothing")
                w["log_y"] = gr.Checkbox(False, label="log scale", elem_id="log-scale")
            w["x_axis"] = gr.Radio(["step", "tokens"], value="step", label="x axis", elem_id="x-axis")
            w["signals_plot"] = gr.Plot(elem_id="signals-plot", visible=False, label="Signals")
    # hidden plots take no room: a method without rewards gets its metrics full width
    w["reward_warning"] = gr.Markdown("", elem_id="reward-warning")
    with gr.Row(equal_height=False):
        w["method_plot"] = gr.Plot(elem_id="method-plot", visible=False, label="Method metrics")
        w["reward_plot"] = gr.Plot(elem_id="reward-plot", visible=False, label="Rewards")


def _history(w: dict, runs_dir) -> None:
    w["history"] = gr.Dataframe(value=history_rows(runs_dir), headers=HISTORY_HEADERS, interactive=False,
                                elem_id="run-history", wrap=True)
    w["compare_pick"] = gr.Dropdown(choices=run_choices(runs_dir), value=[], multiselect=True,
                                    label="Compare runs (loss curves overlaid)", elem_id="compare-pick")
    w["compare_plot"] = gr.Plot(elem_id="compare-plot", label="Compared loss")
    with gr.Row():
        w["delete"] = gr.Button("Delete run…", variant="stop", elem_id="delete-run", size="sm")
        w["use_base"] = gr.Button("Use as base of a new run", elem_id="use-as-base", size="sm")
        w["export"] = gr.Button("Export spec", elem_id="export-spec", size="sm")
    with gr.Row(visible=False) as confirm_row:
        w["confirm_text"] = gr.Markdown("", elem_id="delete-question")
        w["confirm"] = gr.Button("Yes, delete it", variant="stop", elem_id="delete-confirm", size="sm")
        w["cancel"] = gr.Button("Cancel", elem_id="delete-cancel", size="sm")
    w["confirm_row"] = confirm_row
    # shown by Export: empty, they were two tall blank boxes
    w["export_file"] = gr.File(label="spec.yaml", elem_id="export-file", interactive=False, visible=False)
    w["cli_box"] = gr.Code(label="Equivalent CLI command", language="shell", elem_id="cli-command", visible=False)


def build_view(fields: dict, spec, settings, timer: gr.Timer | None = None) -> dict:
    """The tab's layout; `fields` (every tab's spec widgets) gains this tab's. Returns
    the widgets wire() attaches handlers to."""
    runs_dir = settings.runs_dir
    w: dict = {}
    with gr.Row(elem_id="train-top", equal_height=False):
        _controls(w, fields, spec, runs_dir, form.problems_markdown(spec.validate()))
    _charts(w)
    # settings and history side by side below the charts, not one long column
    with gr.Row(elem_id="train-lower", equal_height=False):
        with gr.Column(scale=1, min_width=420):
            with gr.Accordion("Training settings", open=False):
                fields.update(build(spec, runs_dir, name=False, shown=w))
            w["spec_io"] = spec_io.build(runs_dir)
        with gr.Column(scale=2, min_width=420):
            with gr.Accordion("Run history and comparison", open=True):
                _history(w, runs_dir)
    w["run_id"], w["offset"], w["records"], w["shown_state"] = gr.State(""), gr.State(0), gr.State([]), gr.State("")
    w["watched"] = gr.State("")  # the run offset/records/shown_state were read from (see poll)
    # a timer inside a tab that was never opened does not tick: the app passes one made
    # outside the tabs, so a reload on another tab still follows the run (header)
    w["timer"] = timer if timer is not None else gr.Timer(POLL_SECONDS, active=False)
    return w


def build_section(demo: gr.Blocks, fields: dict, spec, settings, header=None, timer=None) -> dict:
    """The Train tab's controls and live view, wired; `header` is the page's run-state
    line (updated by every tick)."""
    from studio.ui import train_handlers

    w = build_view(fields, spec, settings, timer)
    train_handlers.wire(demo, fields, w, settings, header)
    spec_io.wire(fields, w["spec_io"], settings)
    return w
