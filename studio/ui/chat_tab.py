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
