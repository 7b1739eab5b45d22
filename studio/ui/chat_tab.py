"""Chat tab: talk to a run's model, with a second model (the base, or another run)
side by side. Models load lazily in this process (inference imports torch only then)."""
from __future__ import annotations

import gradio as gr

from studio import jobs
from studio.inference import GenerationSettings, ModelCache, stream_chat


def model_choices(runs_dir) -> list[str]:
    return [r["run_id"] for r in jobs.list_runs(runs_dir) if r["has_final"]]


def settings_from(system, temperature, top_p, top_k, max_new, rep) -> GenerationSettings:
    return GenerationSettings(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k or 0),
                              max_new_tokens=int(max_new), repetition_penalty=float(rep),
                              system_prompt=system or "")


def make_handlers(cache: ModelCache, runs_dir, trust_remote_code: bool, allow_paths: bool = True):
    def _check(source: str) -> str:
        source = (source or "").strip()
        if not source:
            raise gr.Error("Choose a run or type a model folder / hub id first.")
        if not allow_paths and source not in model_choices(runs_dir) and source not in cache.loaded():
            raise gr.Error("This studio only serves its configured models.")
        return source

    def load(source):
        source = _check(source)
        try:
            loaded = cache.get(source, trust_remote_code=trust_remote_code, runs_dir=runs_dir)
        except Exception as exc:  # noqa: BLE001 - shown to the person, nothing else breaks
            raise gr.Error(f"Could not load {source}: {exc}") from None
        return f"Loaded: {loaded.describe()}"

    def unload(source):
        cache.unload(source or None)
        return "Unloaded." if source else "All models unloaded."

    def respond(source, history, message, system, temperature, top_p, top_k, max_new, rep):
        """Stream a reply into `history` (messages format)."""
        if not source:
            yield history
            return
        source = _check(source)
        loaded = cache.get(source, trust_remote_code=trust_remote_code, runs_dir=runs_dir)
        history = list(history or []) + [{"role": "user", "content": message},
                                          {"role": "assistant", "content": ""}]
        msgs = [{"role": m["role"], "content": _text(m["content"])} for m in history[:-1]]
        settings = settings_from(system, temperature, top_p, top_k, max_new, rep)
        for text in stream_chat(loaded, msgs, settings):
            history[-1] = {"role": "assistant", "content": text}
            yield history
        yield history

    return load, unload, respond


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # gradio may hand back [{"type": "text", "text": ...}]
        return "".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content)


def build(cache: ModelCache, settings, demo_only: bool) -> list:
    """The Chat tab; returns the two model pickers (refreshed when the tab opens)."""
    runs_dir = settings.runs_dir
    choices = list(settings.demo_models) if demo_only else model_choices(runs_dir)
    load, unload, respond = make_handlers(cache, runs_dir, settings.trust_remote_code,
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
