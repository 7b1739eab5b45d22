"""Load a model (a run's output, a model folder, a hub id; adapters on their base) and
stream chat replies. Shared by the Chat tab and `python -m studio chat`.

torch/transformers are imported inside functions: the UI imports this module at start
and must stay light until someone actually loads a model.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class GenerationSettings:
    # defaults from the seed documentation's inference section
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    system_prompt: str = ""


@dataclass
class Loaded:
    model: object
    tokenizer: object
    source: str
    device: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generate at a time per model

    def describe(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"{self.source} — {n / 1e6:.2f}M parameters on {self.device}"


def resolve_source(source: str, runs_dir: str | None = None) -> str:
    """A run id (or run dir) means that run's final/; anything else is used as given."""
    from studio import jobs

    path = Path(source)
    if path.is_dir():
        return str(path / "final") if (path / "final").is_dir() else str(path)
    try:
        candidate = jobs.run_path(source, runs_dir)
    except jobs.JobError:
        return source
    return str(candidate / "final") if (candidate / "final").is_dir() else source


def load(source: str, device: str | None = None, trust_remote_code: bool = False,
         runs_dir: str | None = None) -> Loaded:
    import torch

    from transformers.utils import logging as hf_logging

    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    hf_logging.disable_progress_bar()  # a per-tensor bar in a chat window is noise

    resolved = resolve_source(source, runs_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec = ModelSpec(source="pretrained", name_or_path=resolved, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(spec)
    model = build_or_load(spec, tokenizer, None, device=device)
    model.eval()
    return Loaded(model=model, tokenizer=tokenizer, source=resolved, device=device)


class ModelCache:
    """At most `capacity` loaded models, least recently used evicted first. The cache is
    keyed by source (not by browser session): two visitors chatting with the same run
    share one copy of the weights, which is what keeps memory bounded in demo mode."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._items: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, **kwargs) -> Loaded:
        key = resolve_source(source, kwargs.get("runs_dir"))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            loaded = load(source, **kwargs)
            self._items[key] = loaded
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return loaded

    def unload(self, source: str | None = None) -> None:
        with self._lock:
            if source is None:
                self._items.clear()
            else:
                self._items.pop(resolve_source(source), None)
        _free_device_memory()

    def loaded(self) -> list[str]:
        return list(self._items)


def _free_device_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def build_prompt(tokenizer, messages: list[dict], settings: GenerationSettings) -> str:
    msgs = list(messages)
    if settings.system_prompt and not (msgs and msgs[0].get("role") == "system"):
        msgs = [{"role": "system", "content": settings.system_prompt}] + msgs
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    # a base model without a template: plain continuation of the last user turn
    return msgs[-1]["content"] if msgs else ""


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def stream_chat(loaded: Loaded, messages: list[dict], settings: GenerationSettings | None = None,
                stop_event: threading.Event | None = None) -> Iterator[str]:
    """Yield the reply as it grows (the whole text so far each time), token by token."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    settings = settings or GenerationSettings()
    tok = loaded.tokenizer
    prompt = build_prompt(tok, messages, settings)
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False).to(loaded.device)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=300)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return bool(stop_event and stop_event.is_set())

    sample = settings.temperature > 0
    gen_kwargs = dict(
        **inputs, streamer=streamer, max_new_tokens=settings.max_new_tokens, do_sample=sample,
        repetition_penalty=settings.repetition_penalty, eos_token_id=stop_token_ids(tok),
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        stopping_criteria=StoppingCriteriaList([_Stop()]),
    )
    if sample:
        gen_kwargs.update(temperature=settings.temperature, top_p=settings.top_p,
                          top_k=settings.top_k if settings.top_k > 0 else None)
    errors: list[BaseException] = []

    def run():
        try:
            with loaded.lock, torch.inference_mode():
                loaded.model.generate(**gen_kwargs)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the caller below
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text
    thread.join()
    if errors:
        raise errors[0]


def reply(loaded: Loaded, prompt: str, settings: GenerationSettings | None = None) -> str:
    out = ""
    for out in stream_chat(loaded, [{"role": "user", "content": prompt}], settings):
        pass
    return out
