"""The Gradio app: five tabs sharing one run spec, a run-state header above them and a
first-visit banner. Handlers only read widgets into a RunSpec and call studio functions;
no training, data or model logic lives here.

Each tab module has `build(...)` (its widgets) and, where its events read other tabs'
widgets, `wire(demo, ...)` called once every tab exists."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.inference import ModelCache
from studio.presets import default_spec
from studio.ui import chat_tab, data_tab, eval_tab, export_tab, method_tab, model_tab, train_tab
from studio.ui.train_view import header_html

CSS = """
#progress-info progress { height: 14px; }
.run-error { color: var(--error-text-color, #c00); white-space: pre-wrap; }
#run-header { padding: 4px 10px; border-radius: 8px; background: var(--block-background-fill); }
#run-header-info { font-size: 0.95rem; }
.state-badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600;
  font-size: 0.85rem; color: #fff; background: #888; margin-right: 4px; }
.state-running { background: #2563eb; } .state-queued, .state-starting { background: #d97706; }
.state-completed { background: #16a34a; } .state-failed, .state-corrupt { background: #dc2626; }
.state-stopped { background: #6b7280; }
#welcome { border: 1px solid var(--color-accent); border-radius: 10px; padding: 6px 12px; }
#app-title h2 { margin: 0; }
"""
WELCOME_KEY = "studio-welcome-dismissed"  # localStorage: the banner shows once per browser
WELCOME = ("**New here?** Training Studio trains language models: pick a model, data and a method, press "
           "Start, watch the loss, then chat with the result. The built-in quickstart trains a tiny model "
           "on arithmetic in a few minutes on a CPU: **one click**.")


WELCOME_HOSTED = ("**New here?** Training Studio trains language models: pick a model, data and a method, "
                  "press Start on the Train tab, watch the loss, then chat with the result.")


@dataclass
class AppSettings:
    runs_dir: str | None = None
    demo: bool = False  # chat only, with the configured models
    demo_models: tuple[str, ...] = ()
    trust_remote_code: bool = False  # --trust-remote-code: clients may turn it on (studio.policy)
    chat_cache_size: int = 2
    hosted: bool = False  # auth, demo, share or a non-local bind: paths confined (studio.policy)


def _top_bar(hosted: bool) -> dict:
    with gr.Row(equal_height=False, elem_id="top-bar"):
        with gr.Column(scale=1, min_width=220):
            gr.Markdown("## Training Studio", elem_id="app-title")
        with gr.Column(scale=4, min_width=300):
            header = gr.HTML(header_html("", {}, []), elem_id="run-header")
        to_train = gr.Button("Open Train ›", size="sm", elem_id="header-train", scale=0, min_width=110)
    with gr.Row(visible=True, elem_id="welcome") as banner:
        # a hosted server (auth, share, public bind) shares its device: no run starts from
        # a button every visitor (or a script calling the event) can press without a form
        gr.Markdown(WELCOME if not hosted else WELCOME_HOSTED)
        quick = None if hosted else gr.Button("Start the quickstart", variant="primary", elem_id="quickstart",
                                              scale=0, min_width=180)
        dismiss = gr.Button("Dismiss", elem_id="welcome-dismiss", scale=0, min_width=90, size="sm")
    return dict(header=header, to_train=to_train, banner=banner, quick=quick, dismiss=dismiss,
                seen=gr.Checkbox(False, visible=False), timer=gr.Timer(train_tab.POLL_SECONDS, active=False))


def _wire_top(demo, top: dict, tabs, train: dict, settings) -> None:
    from studio.ui.train_handlers import start_run
    from studio.ui.train_view import run_choices

    remember = f"() => {{ localStorage.setItem('{WELCOME_KEY}', '1'); }}"
    top["to_train"].click(lambda: gr.Tabs(selected="train"), None, tabs, api_visibility="private")
    top["dismiss"].click(lambda: gr.update(visible=False), None, top["banner"], js=remember,
                         api_visibility="private")

    def quickstart():
        """The default spec as it ships (not the form's edits): one click, a known-good run."""
        try:
            rid, said = start_run(default_spec(), settings)
        except Exception as exc:  # noqa: BLE001 - SpecError/JobError/policy: shown, nothing started
            raise gr.Error(str(exc)) from None
        return (gr.update(visible=False), gr.Tabs(selected="train"), rid, 0, [], "", gr.Timer(active=True),
                f"Quickstart: {said}. The loss chart fills in as it trains; Chat offers the model when it ends.",
                gr.update(choices=run_choices(settings.runs_dir), value=rid))

    if top["quick"] is None:
        return _remember_banner(demo, top)
    top["quick"].click(quickstart, None, [top["banner"], tabs, train["run_id"], train["offset"], train["records"],
                                          train["shown_state"], train["timer"], train["message"], train["run_pick"]],
                       js=remember, api_name="quickstart", trigger_mode="once")
    _remember_banner(demo, top)


def _remember_banner(demo, top: dict) -> None:
    """Remembered in the browser: a dismissed banner stays hidden after a reload."""
    demo.load(lambda seen: gr.update(visible=not seen), top["seen"], top["banner"],
              js=f"() => [localStorage.getItem('{WELCOME_KEY}') === '1']", api_visibility="private")


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    settings = settings or AppSettings()
    cache = ModelCache(settings.chat_cache_size)
    spec = default_spec()
    with gr.Blocks(title="Training Studio") as demo:
        if settings.demo:
            gr.Markdown("## Training Studio")
            chat_tab.build(cache, settings, demo_only=True)
            return demo
        top = _top_bar(settings.hosted)
        fields: dict = {}
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Model", id="model"):
                model = model_tab.build(spec, settings)
                fields.update(model["fields"])
            with gr.Tab("Data", id="data"):
                data = data_tab.build(spec, settings)
                fields.update(data["fields"])
            with gr.Tab("Method", id="method") as method_page:
                method = method_tab.build(spec)
                method["tab"] = method_page  # opening it re-infers the advisor's answers
                fields.update(method["fields"])
            with gr.Tab("Train", id="train"):
                train = train_tab.build_section(demo, fields, spec, settings, top["header"], top["timer"])
            with gr.Tab("Evaluate", id="evaluate") as evaluate:
                eval_pickers = eval_tab.build(settings)
            with gr.Tab("Chat", id="chat") as chat:
                chat_widgets = chat_tab.build(cache, settings, demo_only=False)
            with gr.Tab("Export", id="export") as export:
                export_widgets = export_tab.build(settings)
        export_tab.wire(demo, export_widgets, export)
        chat_tab.wire(demo, chat_widgets, chat, settings)
        _wire_top(demo, top, tabs, train, settings)
        evaluate.select(lambda: eval_tab.refresh_choices(settings.runs_dir), None, list(eval_pickers),
                        api_visibility="private")
        # events that read or fill fields of several tabs (live estimate, advisor, previews)
        data_tab.wire(demo, data, fields, settings)
        model_tab.wire(demo, model, fields, settings)
        method_tab.wire(demo, method, fields, settings)
    return demo
