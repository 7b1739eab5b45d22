"""Export tab: ship a run (or a checkpoint) as its adapter, a merged model or a GGUF
(with its parity check and Ollama Modelfile), push it to a hub, and serve it over an
OpenAI-compatible API. The work is studio.ship.export_job's and studio.ship.background's;
this module maps widgets onto them.

Not built in demo mode (the demo serves chat only). On a hosted server nothing is
pushed with the server's token, and the API server needs a key."""
from __future__ import annotations

import gradio as gr

from studio.ship import export_job
from studio.ship.background import BackgroundServer, check_port, command
from studio.ship.cli import ServeError

PRIVATE = "private"
# a checkpoint folder also holds the trainer's pickles, which the loader refuses
CHECKPOINT_SERVE = ("run: the server serves a run's final model; for a checkpoint, export it as 'merged' first "
                    "and serve that folder: `python -m studio serve runs/exports/NAME`")


def _text(value) -> str:
    """A widget's text; anything else a crafted event call sends counts as empty."""
    return value.strip() if isinstance(value, str) else ""


class Handlers:
    def __init__(self, settings, server: BackgroundServer):
        self.runs_dir, self.hosted, self.demo, self.server = settings.runs_dir, settings.hosted, settings.demo, server

    def choices(self):
        return [(label, value) for label, value in export_job.sources(self.runs_dir)]

    def export(self, source, name, kind, gguf_type, overwrite, repo, private):
        if self.demo:  # the tab is not built in demo mode; an event call that reaches here anyway is refused
            raise gr.Error("Export is not available in demo mode.")
        req = export_job.Request(source=_text(source), name=_text(name), kind=_text(kind), gguf_type=_text(gguf_type),
                                 overwrite=overwrite is True, push_to=_text(repo), private=private is not False)
        try:
            report = export_job.run(req, self.runs_dir, allow_push=not (self.hosted or self.demo))
        except export_job.ExportJobError as exc:
            raise gr.Error(str(exc)) from None
        return export_job.markdown(report)

    def suggest_name(self, source, kind, gguf_type):
        source, kind, gguf_type = _text(source), _text(kind), _text(gguf_type)
        if not source:
            return gr.update()
        base = source.replace("/", "-")
        return f"{base}-{gguf_type}" if kind == "gguf" else f"{base}-{kind}"

    def serve_command(self, source, port, api_key):
        source, api_key = _text(source), _text(api_key)
        if not source:
            return "Pick a run above; the command to serve it shows here."
        if "/" in source:
            return CHECKPOINT_SERVE
        try:
            export_job.resolve(source, self.runs_dir)
            port = check_port(port)
        except (ServeError, export_job.ExportJobError) as exc:
            return f"⚠️ {exc}"
        need_key = bool(api_key) or self.hosted
        return ("Serve it from a terminal (stops with Ctrl+C):\n\n```\n"
                f"{command(source, port, need_key, self.runs_dir)}\n```")

    def toggle(self, on, source, port, api_key):
        """(checkbox, status): a refusal switches the box back off and says why."""
        source, api_key = _text(source), _text(api_key)
        if on is not True:
            self.server.stop()
            return gr.update(value=False), self.server.status()
        if "/" in source:
            return gr.update(value=False), f"⚠️ {CHECKPOINT_SERVE}"
        try:
            folder = export_job.resolve(source, self.runs_dir)
            self.server.start(source, folder, port, api_key, hosted=self.hosted)
        except (ServeError, export_job.ExportJobError) as exc:
            return gr.update(value=False), f"⚠️ {exc}"
        return gr.update(value=True), self.server.status()

    def serve_state(self):
        return gr.update(value=self.server.running()), self.server.status()


def _export_section(h: Handlers, hosted: bool) -> dict:
    from studio.ship import gguf

    w = {}
    gr.Markdown(gguf.status(), elem_id="ship-gguf-status")
    with gr.Row():
        w["source"] = gr.Dropdown(choices=h.choices(), value=None, label="run (or checkpoint)", elem_id="ship-source")
        w["kind"] = gr.Radio([(label, key) for key, label in export_job.KINDS.items()], value="merged",
                             label="format", elem_id="ship-kind")
    with gr.Row():
        w["type"] = gr.Dropdown(list(gguf.TYPES), value="q8_0", label="GGUF type (q8_0: near lossless; q4_k_m: "
                                "smallest that usually holds up)", visible=False, elem_id="ship-gguf-type")
        w["name"] = gr.Textbox(label="folder name (under runs/exports/)", elem_id="ship-name")
        w["overwrite"] = gr.Checkbox(False, label="replace an existing folder of that name")
    with gr.Accordion("Push to a hub repository (optional)", open=False, visible=not hosted):
        with gr.Row():
            w["repo"] = gr.Textbox(label="repository (user/name; needs HF_TOKEN; empty: no push)",
                                   elem_id="ship-repo")
            w["private"] = gr.Checkbox(True, label="private repository", elem_id="ship-private")
    w["run"] = gr.Button("Export", variant="primary", elem_id="ship-run")
    w["result"] = gr.Markdown("", elem_id="ship-result")
    return w


def _serve_section(hosted: bool) -> dict:
    w = {}
    with gr.Accordion("Serve (OpenAI API)", open=True):
        gr.Markdown("`/v1/models`, `/v1/chat/completions`, `/v1/completions` (streaming too) on 127.0.0.1, "
                    "for any OpenAI client. One server for this studio (every browser session sees it); it stops "
                    "when switched off or when the studio exits."
                    + (" **This studio is hosted: the API needs a key.**" if hosted else ""))
        with gr.Row():
            w["port"] = gr.Number(8000, precision=0, label="port", elem_id="ship-port")
            w["key"] = gr.Textbox(label="API key" + (" (required here)" if hosted else " (optional on 127.0.0.1)"),
                                  type="password", elem_id="ship-key")
            w["on"] = gr.Checkbox(False, label="Serve (OpenAI API)", elem_id="ship-serve")
        w["command"] = gr.Markdown("", elem_id="ship-serve-command")
        w["status"] = gr.Markdown("", elem_id="ship-serve-status")
    return w


def build(settings) -> dict:
    """The Export tab's widgets (for wire())."""
    h = Handlers(settings, BackgroundServer(settings.runs_dir))
    w = _export_section(h, settings.hosted)
    s = _serve_section(settings.hosted)
    w["kind"].change(lambda k: gr.update(visible=k == "gguf"), w["kind"], w["type"], api_visibility=PRIVATE)
    for trigger in (w["source"], w["kind"], w["type"]):
        trigger.change(h.suggest_name, [w["source"], w["kind"], w["type"]], w["name"], api_visibility=PRIVATE)
    # long (a merge, a conversion, the parity check): queued, so other sessions' events go on
    w["run"].click(h.export, [w["source"], w["name"], w["kind"], w["type"], w["overwrite"], w["repo"], w["private"]],
                   w["result"], api_visibility=PRIVATE)
    for trigger in (w["source"], s["port"], s["key"]):
        trigger.change(h.serve_command, [w["source"], s["port"], s["key"]], s["command"], api_visibility=PRIVATE)
    # .input: only a person's click toggles (the handler setting the box back does not re-fire)
    s["on"].input(h.toggle, [s["on"], w["source"], s["port"], s["key"]], [s["on"], s["status"]],
                  api_visibility=PRIVATE)
    return {"h": h, "source": w["source"], "serve": [s["on"], s["status"]]}


def wire(demo: gr.Blocks, widgets: dict, tab: gr.Tab) -> None:
    """Opening the tab offers runs finished since and the server's state now."""
    h = widgets["h"]
    tab.select(lambda cur: gr.update(choices=h.choices(), value=cur), widgets["source"], widgets["source"],
               api_visibility=PRIVATE)
    tab.select(h.serve_state, None, widgets["serve"], api_visibility=PRIVATE)
    demo.load(h.serve_state, None, widgets["serve"], api_visibility=PRIVATE)
