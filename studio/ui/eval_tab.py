"""The Evaluate tab: pick a run (and its base, an export, or other models), a question
(did it learn / what did it forget / does the export behave the same) or tasks, start an
evaluation in the background, watch its progress, read the scorecard with intervals and
the A/B examples, and compare runs in a bar chart. Widgets map to an EvalSpec; the work
is studio.evaluate's. No torch is imported here."""
from __future__ import annotations

import html

import gradio as gr

from studio import jobs
from studio.evaluate import background, presets, report
from studio.evaluate.spec import EvalSettings, EvalSpec

QUESTIONS = {"Did it learn?": "learn", "What did it forget?": "forget", "Does the export behave the same?": "export"}
CARD_HEADERS = ["task", "model", "metric", "value", "95% CI", "B - A", "n", "failed"]
AB_HEADERS = ["#", "input", "reference", "A output", "B output", "A right", "B right"]


def run_choices(runs_dir) -> list[str]:
    try:
        return [r["run_id"] for r in jobs.list_runs(runs_dir) if r.get("has_final")]
    except (jobs.JobError, OSError):
        return []


def spec_from_widgets(run: str, question: str, data: str, exported: str, extra: str, max_examples,
                      max_new_tokens) -> EvalSpec:
    """The widgets' values as an EvalSpec (ValueError naming the widget when one is missing)."""
    if not run:
        raise ValueError("Run: pick a finished run to evaluate")
    settings = EvalSettings(max_new_tokens=int(max_new_tokens or 32))
    n = int(max_examples or 0)
    kind = QUESTIONS.get(question, "learn")
    if kind == "export":
        if not (exported or "").strip():
            raise ValueError("Exported model: give the folder `studio export` wrote")
        spec = presets.export(run, exported.strip(), data.strip(), n, settings)
    elif kind == "forget":
        spec = presets.forget(run, data.strip(), max_examples=n, settings=settings)
    else:
        spec = presets.learn(run, data.strip(), n, settings)
    spec.models += [m.strip() for m in (extra or "").split(",") if m.strip()]
    return spec


def start(run, question, data, exported, extra, max_examples, max_new_tokens, runs_dir):
    try:
        eval_dir = background.launch(spec_from_widgets(run, question, data, exported, extra, max_examples,
                                                        max_new_tokens), runs_dir)
    except Exception as exc:  # noqa: BLE001 - every refusal is shown as is, nothing started
        return "", f"<div class='run-error'>{html.escape(str(exc))}</div>", gr.Timer(active=False)
    return str(eval_dir), "Queued...", gr.Timer(active=True)


def progress_html(st: dict) -> str:
    done, total = st.get("done", 0) or 0, st.get("total", 0) or 0
    eta = st.get("eta_s")
    state = st.get("state", "unknown")
    text = f"{state}: {done}/{total} examples" + (f", about {eta:.0f} s left" if isinstance(eta, (int, float))
                                                   and state == "running" else "")
    bar = f"<progress value='{done}' max='{max(total, 1)}'></progress>"
    err = f"<div class='run-error'>{html.escape(st['error'])}</div>" if st.get("error") else ""
    return f"<div id='eval-progress-info'>{bar} {html.escape(text)}</div>{err}"


def card_rows(summary: dict | None) -> list[list]:
    if not summary:
        return []
    fmt = lambda v: None if v is None else round(v, 4)  # noqa: E731
    return [[r["task"], r["model"], r["metric"] + (" (dropped)" if r["dropped"] else ""), fmt(r["value"]), r["ci"],
             fmt(r["delta"]), r["n"], r["failed"]] for r in report.scorecard(summary)]


def drops_html(summary: dict | None) -> str:
    if not summary:
        return ""
    lines = [f"<span style='color:#c00'>{html.escape(r['model'])} dropped on {html.escape(r['task'])} "
             f"{html.escape(r['metric'])}: {r['delta']:+.4f}</span>" for r in report.scorecard(summary) if r["dropped"]]
    for task, verdicts in (summary.get("parity") or {}).items():
        for model, v in verdicts.items():
            colour = "#080" if v["passed"] else "#c00"
            first = v["mismatches"][0] if v["mismatches"] else None
            why = (f"; first difference at token {first['position']}: {html.escape(repr(first['a_token']))} vs "
                   f"{html.escape(repr(first['b_token']))}") if first else ""
            lines.append(f"<span style='color:{colour}'>{html.escape(task)}: {html.escape(model)} "
                         f"{'passed' if v['passed'] else 'FAILED'} ({v['agreement']:.0%} agreement){why}</span>")
    return "<br>".join(lines)


def bar_chart(summaries: list[dict]):
    """Each metric's value per model, across the evaluations given (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    models: dict[str, dict] = {}
    for s in summaries:
        for r in report.scorecard(s):
            if r["value"] is not None and r["metric"] not in ("perplexity",):
                models.setdefault(r["model"], {})[f"{r['task']}: {r['metric']}"] = r["value"]
    for model, values in models.items():
        fig.add_bar(name=model, x=list(values), y=list(values.values()))
    fig.update_layout(barmode="group", height=320, margin=dict(l=30, r=10, t=30, b=30), title="Metrics by model")
    return fig


def latest_summaries(runs: list[str], runs_dir) -> list[dict]:
    out = []
    for run in runs or []:
        done = [r for r in background.list_evals(runs_dir, run) if r["state"] == "completed"]
        summary = background.read_summary(done[0]["path"]) if done else None
        if summary:
            out.append(summary)
    return out


def poll(eval_dir: str, task: str, only_regressions: bool, compare_runs: list, runs_dir):
    if not eval_dir:
        return ("", gr.update(), [], "", gr.update(), [], gr.Timer(active=False))
    st = background.status(eval_dir)
    summary = background.read_summary(eval_dir) if st.get("state") == "completed" else None
    finished = st.get("state") in jobs.TERMINAL
    tasks = [t["name"] for t in (summary or {}).get("tasks", [])]
    task = task if task in tasks else (tasks[0] if tasks else None)
    table = examples_table(eval_dir, summary, task, only_regressions)
    chart = bar_chart(([summary] if summary else []) + latest_summaries(compare_runs, runs_dir)) if summary \
        else gr.update()
    return (progress_html(st), gr.update(choices=tasks, value=task), card_rows(summary), drops_html(summary),
            chart, table, gr.Timer(active=not finished))


def examples_table(eval_dir: str, summary: dict | None, task: str | None, only_regressions: bool) -> list[list]:
    if not summary or not task or len(summary["models"]) < 1:
        return []
    models = summary["models"]
    a, b = models[0], models[1] if len(models) > 1 else models[0]
    return report.ab_table(background.read_examples(eval_dir), task, a, b, bool(only_regressions))


def build(settings) -> None:
    runs_dir = settings.runs_dir
    gr.Markdown("Evaluate a run against its base (A = the first model, B = the run or the export). "
                "Results are saved beside the run under eval/.")
    with gr.Row():
        run = gr.Dropdown(run_choices(runs_dir), label="Run", elem_id="eval-run", allow_custom_value=True)
        question = gr.Radio(list(QUESTIONS), value="Did it learn?", label="Question", elem_id="eval-question")
    with gr.Row():
        data = gr.Textbox(label="Data (prompts with references; empty: the run's held-out split / the shipped probe)",
                          elem_id="eval-data")
        exported = gr.Textbox(label="Exported model folder (export question)", elem_id="eval-exported")
        extra = gr.Textbox(label="More models (comma-separated: run:<id>, folders, hub ids)", elem_id="eval-extra")
    with gr.Row():
        max_examples = gr.Number(value=0, precision=0, label="Max examples per task (0 = all)",
                                 elem_id="eval-max-examples")
        max_new = gr.Number(value=32, precision=0, label="Max new tokens", elem_id="eval-max-new")
        start_btn = gr.Button("Evaluate", variant="primary", elem_id="eval-start")
        stop_btn = gr.Button("Stop evaluation", elem_id="eval-stop")
    eval_dir = gr.Textbox(visible=False, elem_id="eval-dir")
    info = gr.HTML(elem_id="eval-progress")
    card = gr.Dataframe(headers=CARD_HEADERS, label="Scorecard", elem_id="eval-scorecard", interactive=False)
    drops = gr.HTML(elem_id="eval-drops")
    with gr.Row():
        task = gr.Dropdown([], label="Task", elem_id="eval-task")
        regress = gr.Checkbox(label="Only B wrong, A right", elem_id="eval-regressions")
    table = gr.Dataframe(headers=AB_HEADERS, label="Examples, A and B side by side", elem_id="eval-examples",
                         interactive=False, wrap=True)
    compare = gr.Dropdown(run_choices(runs_dir), multiselect=True, label="Compare with runs (their latest evaluation)",
                          elem_id="eval-compare")
    chart = gr.Plot(elem_id="eval-chart")
    timer = gr.Timer(1.0, active=False)
    rd = gr.State(runs_dir)
    start_btn.click(start, [run, question, data, exported, extra, max_examples, max_new, rd],
                    [eval_dir, info, timer], api_visibility="private")
    outs = [info, task, card, drops, chart, table, timer]
    timer.tick(poll, [eval_dir, task, regress, compare, rd], outs, api_visibility="private")
    stop_btn.click(lambda d: progress_html(background.stop(d)) if d else "", eval_dir, info, api_visibility="private")
    for widget in (task, regress, compare):
        widget.change(poll, [eval_dir, task, regress, compare, rd], outs, api_visibility="private")
    return run, compare


def refresh_choices(runs_dir):
    choices = run_choices(runs_dir)
    return gr.update(choices=choices), gr.update(choices=choices)

