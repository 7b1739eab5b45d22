"""Chat tab: talk to a run's model, with a second model (the base, or another run)
side by side; a prompt set against both; export. Models load lazily in this process
(inference imports torch only then).

In demo mode only the configured models are served and every handler checks that on
the server (a request can name any source, whatever the page shows); no load, unload,
device or export events exist at all."""
from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path

import gradio as gr

from studio import jobs
from studio.inference import (GenerationSettings, ModelCache, compare, device_conflict, from_display,
                              stream_chat, to_display)

DEVICES = ["auto", "cpu", "cuda"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def model_choices(runs_dir) -> list[str]:
    return [r["run_id"] for r in jobs.list_runs(runs_dir) if r["has_final"]]


def settings_from(system, temperature, top_p, top_k, max_new, rep) -> GenerationSettings:
    return GenerationSettings(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k or 0),
                              max_new_tokens=int(max_new), repetition_penalty=float(rep),
                              system_prompt=system or "")


def demo_names(models) -> dict[str, str]:
    """Public name -> configured source. Visitors see and send names only, so a folder's
    path never reaches the page or the API."""
    names: dict[str, str] = {}
    for source in models:
        name = Path(source).name if ("/" in source and Path(source).expanduser().exists()) else source
        while name in names:
            name += "'"
        names[name] = source
    return names


class Handlers:
    """The server side of the tab. `allowed` (demo mode): public name -> source, the
    only models served."""

    def __init__(self, cache: ModelCache, runs_dir, trust_remote_code: bool, allowed: dict[str, str] | None = None):
        self.cache, self.runs_dir, self.trust, self.allowed = cache, runs_dir, trust_remote_code, allowed

    def check(self, source) -> str:
        source = (source or "").strip() if isinstance(source, str) else ""
        if not source:
            raise gr.Error("Choose a run or type a model folder / hub id first.")
        if self.allowed is not None and source not in self.allowed:
            raise gr.Error("This demo only serves its configured models.")
        return source

    def get(self, source, device=None):
        name = self.check(source)
        source = self.allowed[name] if self.allowed is not None else name
        try:
            return self.cache.get(source, device=device, trust_remote_code=self.trust, runs_dir=self.runs_dir,
                                  label=name)
        except Exception as exc:  # noqa: BLE001 - shown to the person, nothing else breaks
            detail = exc if self.allowed is None else type(exc).__name__  # no paths in a demo's errors
            raise gr.Error(f"Could not load {name}: {detail}") from None

    def loaded_summary(self) -> str:
        """The server's model cache: one for every browser session, so it says so."""
        items = [self.cache.peek(k) for k in self.cache.loaded()]
        lines = [f"- {x.describe(show_path=self.allowed is None)}" for x in items if x is not None]
        head = "**Models in memory on this server** (shared by every browser session):\n"
        return head + "\n".join(lines) if lines else ("No model in memory on this server yet (shared by every "
                                                       "browser session); a model loads with Load or on the "
                                                       "first message.")

    def side_status(self, source) -> str:
        """This page's picked model and whether it is in memory now (never another event's
        leftover text: recomputed after every load, unload and chat)."""
        source = (source or "").strip() if isinstance(source, str) else ""
        if not source:
            return ""
        if self.allowed is not None and source not in self.allowed:
            return ""
        key = self.allowed[source] if self.allowed is not None else source
        try:
            loaded = self.cache.peek(key, self.runs_dir)
        except Exception:  # noqa: BLE001 - an unknown name is simply not loaded
            loaded = None
        if loaded is None:
            return f"`{source}`: not loaded yet (loads with Load or on the first message)."
        return f"`{source}`: loaded on {loaded.device}."

    # -- load / unload (not in demo mode) ------------------------------------------
    def load(self, source, device, force=False):
        """(status, confirm row visibility). Asks first when a run trains on that GPU."""
        device = None if device in (None, "", "auto") else device
        from studio.inference import default_device

        target = device or default_device()
        warning = "" if force else device_conflict(target, self.runs_dir)
        if warning:
            return f"⚠️ {warning}", gr.update(visible=True), self.loaded_summary()
        loaded = self.get(source, target)
        return f"Loaded: {loaded.describe()}", gr.update(visible=False), self.loaded_summary()

    def load_cpu(self, source, _device):
        return self.load(source, "cpu", force=True)

    def load_anyway(self, source, device):
        return self.load(source, device, force=True)

    def unload(self, source):
        self.cache.unload(source or None, self.runs_dir)
        return ("Unloaded." if source else "All models unloaded from this server."), self.loaded_summary()

    # -- chat ------------------------------------------------------------------------
    def respond(self, source, history, message, system, temperature, top_p, top_k, max_new, rep, primary=False):
        """Stream a reply to `message` into `history` (messages format); `primary` is the
        left column, which must have a model."""
        history = list(history or [])
        if not source and not primary:  # the comparison column is optional
            yield history
            return
        if not source:  # said, and the message stays in the box (the clearing step runs on success only)
            raise gr.Error("Choose a model first: pick a finished run (or type a model folder) in 'Model' "
                           "above, then press Send again. Your message is kept.")
        self.check(source)  # before anything else: demo mode serves its models only
        message = (message or "").strip()
        if not message:
            raise gr.Error("Type a message first.")
        history.append(to_display(from_display({"role": "user", "content": message})))
        yield from self._generate(source, history, system, temperature, top_p, top_k, max_new, rep)

    def respond_left(self, source, history, message, system, temperature, top_p, top_k, max_new, rep):
        """The left column's reply: it needs a model (the comparison column does not)."""
        yield from self.respond(source, history, message, system, temperature, top_p, top_k, max_new, rep,
                                primary=True)

    def regenerate(self, source, history, system, temperature, top_p, top_k, max_new, rep):
        """Drop the last reply and generate it again."""
        history = list(history or [])
        if not source:
            yield history
            return
        self.check(source)
        while history and history[-1]["role"] == "assistant":
            history.pop()
        if not history:
            raise gr.Error("Nothing to regenerate yet.")
        yield from self._generate(source, history, system, temperature, top_p, top_k, max_new, rep)

    def _generate(self, source, history, system, temperature, top_p, top_k, max_new, rep):
        loaded = self.get(source)
        msgs = [from_display(m) for m in history]
        settings = settings_from(system, temperature, top_p, top_k, max_new, rep)
        history = history + [{"role": "assistant", "content": ""}]
        yield history  # the question shows at once, before the first token
        # closing(): when gradio closes this generator (Stop), stream_chat's finally runs
        # now and stops generate(), instead of whenever the garbage collector gets to it.
        with closing(stream_chat(loaded, msgs, settings)) as replies:
            for text in replies:
                history[-1] = {"role": "assistant", "content": text}
                yield history
        history[-1] = to_display({"role": "assistant", "content": history[-1]["content"]})
        yield history

    def run_prompt_set(self, source_a, source_b, prompts, system, temperature, top_p, top_k, max_new, rep):
        if not source_b:
            raise gr.Error("Choose a second model to compare with.")
        lines = [p for p in (prompts or "").splitlines() if p.strip()][:50]
        if not lines:
            raise gr.Error("Prompt set: write one prompt per line.")
        settings = settings_from(system, temperature, top_p, top_k, max_new, rep)
        return compare(self.get(source_a), self.get(source_b), lines, settings)

    # -- export ------------------------------------------------------------------------
    def export(self, source, name, merge, repo, gguf):
        from studio import export

        source = self.check(source)
        name = (name or "").strip()
        if not name or not _NAME.match(name):
            raise gr.Error("Export folder name: letters, digits, '.', '_', '-' (it is written under runs/exports/).")
        out = jobs.runs_root(self.runs_dir) / "exports" / name  # confined: never an arbitrary path
        try:
            lines = export.export(source, out, merge_adapter=bool(merge), push_to=(repo or "").strip() or None,
                                  gguf=gguf if gguf and gguf != "none" else None, runs_dir=self.runs_dir)
        except export.ExportError as exc:
            raise gr.Error(str(exc)) from None
        return "\n".join(f"- {line}" for line in lines)


def _column(label: str, suffix: str, choices, demo_only: bool):
    picked = gr.Dropdown(choices=choices, value=(choices[0] if choices and not suffix else None),
                         allow_custom_value=not demo_only, label=label, elem_id=f"chat-model{suffix}")
    widgets = {"model": picked}
    if not demo_only:
        with gr.Row():
            widgets["device"] = gr.Radio(DEVICES, value="auto", label="device", elem_id=f"chat-device{suffix}")
            widgets["load"] = gr.Button("Load", elem_id=f"chat-load{suffix}")
        with gr.Row(visible=False) as confirm:
            widgets["cpu"] = gr.Button("Load on CPU instead", elem_id=f"chat-load-cpu{suffix}")
            widgets["anyway"] = gr.Button("Load on the GPU anyway", variant="stop", elem_id=f"chat-load-anyway{suffix}")
        widgets["confirm"] = confirm
    widgets["status"] = gr.Markdown("", elem_id=f"chat-status{suffix}")
    widgets["bot"] = gr.Chatbot(elem_id=f"chatbot{suffix}", height=360, label=label.split(" (")[0],
                                buttons=["copy", "copy_all"])
    return widgets


def _wire_statuses(h: Handlers, a: dict, b: dict, ev: list, loaded_md) -> dict:
    """Load/unload and the statuses. Every status is recomputed from the cache after
    anything that can change it, so a page never keeps an older event's text (or another
    session's at build time). Returns the refresh event's arguments (for wire())."""
    private = "private"
    unload_btn = gr.Button("Unload all models", elem_id="chat-unload", size="sm")
    show = dict(fn=lambda sa, sb: (h.loaded_summary(), h.side_status(sa), h.side_status(sb)),
                inputs=[a["model"], b["model"]], outputs=[loaded_md, a["status"], b["status"]],
                api_visibility=private)
    for e in ev:  # a chat loads its model lazily: show it in the list afterwards
        e.then(**show)
    for side, other in ((a, b), (b, a)):
        io = dict(inputs=[side["model"], side["device"]], outputs=[side["status"], side["confirm"], loaded_md],
                  api_visibility=private)
        for button, fn in ((side["load"], h.load), (side["cpu"], h.load_cpu), (side["anyway"], h.load_anyway)):
            # a load can change what the other column's model is (the same source, or evicted)
            button.click(fn, **io).then(h.side_status, other["model"], other["status"], api_visibility=private)
        side["model"].change(**show)
    unload_btn.click(lambda: h.unload(None), None, [a["status"], loaded_md], api_visibility=private).then(**show)
    return show


def build(cache: ModelCache, settings, demo_only: bool) -> dict:
    # Over 60 lines on purpose: the tab's layout, widget by widget, in the order the page shows it.
    """The Chat tab; returns its widgets for wire() (the two model pickers, the status
    refresh)."""
    runs_dir = settings.runs_dir
    allowed = demo_names(settings.demo_models) if demo_only else None
    choices = list(allowed) if demo_only else model_choices(runs_dir)
    h = Handlers(cache, runs_dir, settings.trust_remote_code, allowed)
    private = "private"
    # which models are in memory, at the top: the first thing a person looks for on Chat
    loaded_md = None if demo_only else gr.Markdown("", elem_id="chat-loaded")
    with gr.Row():
        with gr.Column():
            a = _column("Model (run, folder or hub id)", "", choices, demo_only)
        with gr.Column():
            b = _column("Compare with (base or another run; optional)", "-b", choices, demo_only)
    msg = gr.Textbox(label="Message", elem_id="chat-input",
                     placeholder="Ask something… (start with FUNCTION RESPONSE: to send a tool result)")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="chat-send")
        stop = gr.Button("Stop", elem_id="chat-stop")
        regen = gr.Button("Regenerate", elem_id="chat-regenerate")
        clear = gr.Button("Clear", elem_id="chat-clear")
    with gr.Accordion("Generation settings", open=False):
        system = gr.Textbox(label="system prompt", elem_id="chat-system")
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature (0 = greedy)",
                                    elem_id="chat-temperature")
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="top_p")
            top_k = gr.Number(0, precision=0, label="top_k (0 = off)")
            max_new = gr.Slider(1, 2048, value=256, step=1, label="max_new_tokens", elem_id="chat-max-new")
            rep = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label="repetition penalty")
    gen = [system, temperature, top_p, top_k, max_new, rep]

    ev = []
    for side, api, fn in ((a, "chat", h.respond_left), (b, "chat_compare", h.respond)):
        ev.append(send.click(fn, [side["model"], side["bot"], msg] + gen, side["bot"], api_name=api))
        ev.append(msg.submit(fn, [side["model"], side["bot"], msg] + gen, side["bot"],
                             api_visibility=private))
        ev.append(regen.click(h.regenerate, [side["model"], side["bot"]] + gen, side["bot"],
                              api_visibility=private))
    for e in ev[:2]:  # on success only: a refused message stays in the box
        e.success(lambda: "", None, msg, api_visibility=private)
    stop.click(None, None, None, cancels=ev, api_visibility=private)
    clear.click(lambda: ([], []), None, [a["bot"], b["bot"]], api_visibility=private)

    if demo_only:
        return {"pickers": [a["model"], b["model"]]}

    show = _wire_statuses(h, a, b, ev, loaded_md)

    with gr.Accordion("Prompt set: both models, one prompt per line", open=False):
        prompts = gr.Textbox(lines=5, label="prompts", elem_id="chat-prompts")
        run_set = gr.Button("Run against both", elem_id="chat-run-set")
        table = gr.Dataframe(headers=["prompt", "model", "comparison"], elem_id="chat-table", wrap=True)
    run_set.click(h.run_prompt_set, [a["model"], b["model"], prompts] + gen, table, api_visibility=private)

    from studio.export import GGUF_TYPES, gguf_status

    with gr.Accordion("Export the model on the left (every format with sizes, GGUF parity, Ollama, serving: "
                      "the Export tab)", open=False):
        gr.Markdown(gguf_status())
        with gr.Row():
            out_name = gr.Textbox(label="folder name (under runs/exports/)", elem_id="export-name")
            merge = gr.Checkbox(True, label="merge the adapter into the base")
            repo = gr.Textbox(label="push to hub repository (user/name; needs HF_TOKEN)", elem_id="export-repo")
            gguf = gr.Dropdown(["none", *GGUF_TYPES], value="none", label="GGUF")
        export_btn = gr.Button("Export", elem_id="export-run")
        export_out = gr.Markdown("", elem_id="export-status")
    export_btn.click(h.export, [a["model"], out_name, merge, repo, gguf], export_out, api_visibility=private)
    return {"pickers": [a["model"], b["model"]], "show": show}


def wire(demo: gr.Blocks, widgets: dict, tab: gr.Tab, settings) -> None:
    """Opening the tab offers the runs finished since, and shows this page's statuses;
    so does the page load (never the values computed when the app was built)."""
    pickers = widgets["pickers"]
    def offer(current):
        """Newly finished runs; the newest is picked when nothing is (a first chat needs no choosing)."""
        choices = model_choices(settings.runs_dir)
        first = gr.update(choices=choices, value=current or (choices[0] if choices else None))
        return first, gr.update(choices=choices)

    tab.select(offer, pickers[0], pickers, api_visibility="private")
    if "show" in widgets:
        tab.select(**widgets["show"])
        demo.load(**widgets["show"])
