"""The Gradio app: five tabs sharing one run spec. Handlers only read widgets into a
RunSpec and call studio functions; no training, data or model logic lives here."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.inference import ModelCache
from studio.presets import default_spec
from studio.ui import chat_tab, data_tab, eval_tab, method_tab, model_tab, train_tab

CSS = """
#progress-info progress { height: 14px; }
.run-error { color: var(--error-text-color, #c00); white-space: pre-wrap; }
"""


@dataclass
class AppSettings:
    runs_dir: str | None = None
    demo: bool = False  # chat only, with the configured models
    demo_models: tuple[str, ...] = ()
    trust_remote_code: bool = False  # --trust-remote-code: clients may turn it on (studio.policy)
    chat_cache_size: int = 2
    hosted: bool = False  # auth, demo, share or a non-local bind: paths confined (studio.policy)


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    settings = settings or AppSettings()
    cache = ModelCache(settings.chat_cache_size)
    spec = default_spec()
    with gr.Blocks(title="Training Studio") as demo:
        gr.Markdown("## Training Studio")
        if settings.demo:
            chat_tab.build(cache, settings, demo_only=True)
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
                train_tab.build_section(demo, fields, spec, settings)
            with gr.Tab("Evaluate", id="evaluate") as evaluate:
                eval_pickers = eval_tab.build(settings)
            with gr.Tab("Chat", id="chat") as chat:
                pickers = chat_tab.build(cache, settings, demo_only=False)
        # runs finish while the page is open: offer their models when Chat is opened
        chat.select(lambda: [gr.update(choices=chat_tab.model_choices(settings.runs_dir))] * 2, None,
                    pickers, api_visibility="private")
        evaluate.select(lambda: eval_tab.refresh_choices(settings.runs_dir), None, list(eval_pickers),
                        api_visibility="private")
        # events that read or fill fields of several tabs (live estimate, advisor, previews)
        for tab in (model_tab, data_tab, method_tab):
            if hasattr(tab, "wire"):
                tab.wire(demo, fields, settings)
    return demo
