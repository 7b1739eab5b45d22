"""The Gradio app: five tabs sharing one run spec. Handlers only read widgets into a
RunSpec and call studio functions; no training, data or model logic lives here."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio import jobs
from studio.inference import ModelCache
from studio.presets import default_spec
from studio.spec import SpecError
from studio.ui import chat_tab, data_tab, form, method_tab, model_tab, train_tab

CSS = """
#progress-info progress { height: 14px; }
.run-error { color: var(--error-text-color, #c00); white-space: pre-wrap; }
"""


@dataclass
class AppSettings:
    runs_dir: str | None = None
    demo: bool = False  # chat only, with the configured models
    demo_models: tuple[str, ...] = ()
    trust_remote_code: bool = False
    chat_cache_size: int = 2


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    settings = settings or AppSettings()
    cache = ModelCache(settings.chat_cache_size)
    spec = default_spec()
    with gr.Blocks(title="Training Studio") as demo:
        gr.Markdown("## Training Studio")
        if settings.demo:
            _chat_ui(cache, settings, demo_only=True)
            return demo
        fields: dict = {}
        with gr.Tabs():
            with gr.Tab("Model", id="model"):
                fields.update(model_tab.build(spec))
            with gr.Tab("Data", id="data"):
                fields.update(data_tab.build(spec))
            with gr.Tab("Method", id="method"):
                fields.update(method_tab.build(spec))
            with gr.Tab("Train", id="train"):
                _train_ui(demo, fields, spec, settings)
            with gr.Tab("Chat", id="chat") as chat:
                pickers = _chat_ui(cache, settings, demo_only=False)
        # runs finish while the page is open: offer their models when Chat is opened
        chat.select(lambda: [gr.update(choices=chat_tab.model_choices(settings.runs_dir))] * 2, None,
                    pickers, api_visibility="private")
    return demo


def _train_ui(demo: gr.Blocks, fields: dict, spec, settings: AppSettings) -> None:
    runs_dir = settings.runs_dir
    fields.update(train_tab.build(spec, runs_dir))
    paths, comps = list(fields), list(fields.values())
    problems = gr.Markdown(form.problems_markdown(spec.validate()), elem_id="problems")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="start")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
        stop_save = gr.Button("Stop and save", elem_id="stop-save")
        resume = gr.Button("Resume", elem_id="resume")
    message = gr.Markdown("", elem_id="train-message")
    with gr.Row():
        run_pick = gr.Dropdown(choices=train_tab.run_choices(runs_dir), label="Run", elem_id="run-pick",
                               interactive=True, scale=4)
        refresh = gr.Button("↻ Runs", scale=1)
    progress = gr.HTML(train_tab.progress_html({}, []), elem_id="progress")
    with gr.Row():
        smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="smoothing")
        log_y = gr.Checkbox(False, label="log scale")
        x_axis = gr.Radio(["step", "tokens"], value="step", label="x axis")
    loss_plot = gr.Plot(elem_id="loss-plot", label="Loss")
    signals_plot = gr.Plot(elem_id="signals-plot", visible=False, label="Signals")
    method_plot = gr.Plot(elem_id="method-plot", visible=False, label="Method metrics")
    log_box = gr.Textbox(label="train.log (last lines)", lines=8, max_lines=8, elem_id="train-log")
    run_id, offset, records = gr.State(""), gr.State(0), gr.State([])
    timer = gr.Timer(train_tab.POLL_SECONDS, active=False)

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
                gr.update(choices=train_tab.run_choices(runs_dir), value=rid))

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
    refresh.click(lambda: gr.update(choices=train_tab.run_choices(runs_dir)), None, run_pick,
                  api_visibility="private")
    poll_outputs = [offset, records, progress, loss_plot, signals_plot, method_plot, log_box, timer]

    def tick(rid, off, recs, sm, ly, xa):
        return train_tab.poll(rid, off, recs, sm, ly, xa, runs_dir)

    timer.tick(tick, [run_id, offset, records, smoothing, log_y, x_axis], poll_outputs,
               show_progress="hidden", api_visibility="private")
    for ctl in (smoothing, log_y, x_axis):
        ctl.change(lambda rid, off, recs, sm, ly, xa: train_tab.figures(recs, sm, ly, xa),
                   [run_id, offset, records, smoothing, log_y, x_axis], [loss_plot, signals_plot, method_plot],
                   show_progress="hidden", api_visibility="private")

    def reattach():
        """On page load: watch the newest run that is still going (else nothing)."""
        for r in jobs.list_runs(runs_dir):
            if r["state"] in ("running", "queued"):
                return r["run_id"], 0, [], gr.Timer(active=True), gr.update(
                    choices=train_tab.run_choices(runs_dir), value=r["run_id"])
        return "", 0, [], gr.Timer(active=False), gr.update(choices=train_tab.run_choices(runs_dir))

    demo.load(reattach, None, [run_id, offset, records, timer, run_pick], api_visibility="private")


def _chat_ui(cache: ModelCache, settings: AppSettings, demo_only: bool) -> list:
    runs_dir = settings.runs_dir
    choices = list(settings.demo_models) if demo_only else chat_tab.model_choices(runs_dir)
    load, unload, respond = chat_tab.make_handlers(cache, runs_dir, settings.trust_remote_code,
                                                   allow_paths=not demo_only)
    with gr.Row():
        with gr.Column():
            model_a = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                                  allow_custom_value=not demo_only, label="Model (run or folder)",
                                  elem_id="chat-model")
            load_a = gr.Button("Load", elem_id="chat-load")
            status_a = gr.Markdown("", elem_id="chat-status")
            bot_a = gr.Chatbot(elem_id="chatbot", height=360, label="Model")
        with gr.Column():
            model_b = gr.Dropdown(choices=choices, value=None, allow_custom_value=not demo_only,
                                  label="Compare with (base or another run; optional)", elem_id="chat-model-b")
            load_b = gr.Button("Load", elem_id="chat-load-b")
            status_b = gr.Markdown("", elem_id="chat-status-b")
            bot_b = gr.Chatbot(elem_id="chatbot-b", height=360, label="Comparison")
    msg = gr.Textbox(label="Message", elem_id="chat-input", placeholder="Ask something…")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="chat-send")
        stop = gr.Button("Stop", elem_id="chat-stop")
        clear = gr.Button("Clear", elem_id="chat-clear")
        unload_btn = gr.Button("Unload models", visible=not demo_only)
    with gr.Accordion("Generation settings", open=False):
        system = gr.Textbox(label="system prompt")
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature")
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="top_p")
            top_k = gr.Number(0, precision=0, label="top_k (0 = off)")
            max_new = gr.Slider(1, 2048, value=256, step=1, label="max_new_tokens")
            rep = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label="repetition penalty")
    gen = [system, temperature, top_p, top_k, max_new, rep]
    load_a.click(load, model_a, status_a, api_visibility="private" if demo_only else "public")
    load_b.click(load, model_b, status_b, api_visibility="private" if demo_only else "public")
    unload_btn.click(unload, model_a, status_a, api_visibility="private")
    ev_a = send.click(respond, [model_a, bot_a, msg] + gen, bot_a, api_name="chat")
    ev_b = send.click(respond, [model_b, bot_b, msg] + gen, bot_b, api_name="chat_compare")
    ev_c = msg.submit(respond, [model_a, bot_a, msg] + gen, bot_a, api_visibility="private")
    ev_d = msg.submit(respond, [model_b, bot_b, msg] + gen, bot_b, api_visibility="private")
    for ev in (ev_a, ev_c):
        ev.then(lambda: "", None, msg, api_visibility="private")
    stop.click(None, None, None, cancels=[ev_a, ev_b, ev_c, ev_d], api_visibility="private")
    clear.click(lambda: ([], []), None, [bot_a, bot_b], api_visibility="private")
    return [model_a, model_b]
