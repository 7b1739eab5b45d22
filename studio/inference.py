"""Load a model (a run's output, a model folder, a hub id; adapters on their base) and
stream chat replies. Shared by the Chat tab and `python -m studio chat`.

torch/transformers are imported inside functions: the UI imports this module at start
and must stay light until someone actually loads a model.
"""
# Over ~400 lines on purpose: loading, the cache and streamed generation share the loaded-model record; the Chat tab and `studio serve` both use it.
from __future__ import annotations

import base64
import functools
import json
import re
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
    label: str = ""  # what the page shows instead of the path (demo mode hides paths)

    @functools.cached_property
    def stop_ids(self) -> list[int]:
        return stop_token_ids(self.tokenizer)

    @property
    def is_adapter(self) -> bool:
        return hasattr(self.model, "peft_config")

    def describe(self, show_path: bool = True) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        what = "adapter on its base" if self.is_adapter else "model"
        name = self.source if show_path else (self.label or Path(self.source).name)
        return f"{name} ({what}) — {n / 1e6:.2f}M parameters on {self.device}"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def training_runs(runs_dir: str | None = None) -> list[str]:
    """Runs that hold (or wait for) the training device right now."""
    from studio import jobs

    try:
        return [r["run_id"] for r in jobs.list_runs(runs_dir) if r["state"] in ("running", "queued")]
    except OSError:
        return []


def device_conflict(device: str, runs_dir: str | None = None, cuda_available: bool | None = None) -> str:
    """A warning when loading on `device` would share it with a training run, else "".

    The worker trains on cuda when there is one, so a chat model on cuda competes with it
    for memory (an OOM would kill the run or the chat). On a CPU-only machine both only
    share cores: slower, never corrupted, so no question is asked."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not device.startswith("cuda") or not cuda_available:
        return ""
    busy = training_runs(runs_dir)
    if not busy:
        return ""
    return (f"Run {', '.join(busy)} is training on this GPU. Loading a chat model there takes memory the run may "
            "need (either could run out). Choose 'cpu' to chat without touching the run, or load anyway.")


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
         runs_dir: str | None = None, label: str = "") -> Loaded:
    import torch

    from transformers.utils import logging as hf_logging

    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    hf_logging.disable_progress_bar()  # a per-tensor bar in a chat window is noise

    resolved = resolve_source(source, runs_dir)
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device: this machine has no CUDA GPU; choose cpu")
    spec = ModelSpec(source="pretrained", name_or_path=resolved, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(spec)
    model = build_or_load(spec, tokenizer, None, device=device)
    model.eval()
    return Loaded(model=model, tokenizer=tokenizer, source=resolved, device=device, label=label or source)


class ModelCache:
    """At most `capacity` loaded models, least recently used evicted first. The cache is
    keyed by source (not by browser session): two visitors chatting with the same run
    share one copy of the weights, which is what keeps memory bounded in demo mode."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._items: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, device: str | None = None, **kwargs) -> Loaded:
        """The loaded model for `source`; loads it (on `device`) when missing, and moves
        it when asked for another device. Loading happens under the lock: twenty visitors
        asking at once still load one copy."""
        key = resolve_source(source, kwargs.get("runs_dir"))
        with self._lock:
            if key in self._items and (device is None or self._items[key].device == device):
                self._items.move_to_end(key)
                return self._items[key]
            self._items.pop(key, None)
            loaded = load(source, device=device, **kwargs)
            self._items[key] = loaded
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return loaded

    def unload(self, source: str | None = None, runs_dir: str | None = None) -> None:
        with self._lock:
            if source is None:
                self._items.clear()
            else:
                self._items.pop(resolve_source(source, runs_dir), None)
        _free_device_memory()

    def loaded(self) -> list[str]:
        return list(self._items)

    def peek(self, source: str, runs_dir: str | None = None) -> Loaded | None:
        """The loaded model for `source` without loading it."""
        return self._items.get(resolve_source(source, runs_dir))


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


@functools.lru_cache(maxsize=None)
def _streaming_classes():
    # Over 60 lines on purpose: two small classes defined here so transformers loads only when a chat does.
    """(TokenStreamer, StopOnEvent), built once per process rather than per reply (the
    first-text bench measured ~0.8 ms less with this; class creation is all it saves)."""
    from transformers import StoppingCriteria, TextIteratorStreamer

    class TokenStreamer(TextIteratorStreamer):
        """Hands out text after every token. The stock streamer holds text back until a
        space, so a reply without spaces (digits, code, a small model's babble) would
        arrive all at once; here only an unfinished UTF-8 character waits.

        And it hands each piece over to a reader that is already waiting for it. The
        generate thread lets go of the GIL only inside torch ops and takes it straight
        back, so a woken reader lost that race for up to the 5 ms switch interval while
        its text sat in the queue: the first text reached the chat 2-3 ms after it was
        ready in half the replies (bench/chat_latency.py). Waiting until the reader has
        the piece costs the generate thread ~0.05 ms, and nothing when no one waits (a
        busy reader never slows generation)."""

        handoff_timeout = 0.01  # s; a reader that was waiting takes its piece in ~0.05 ms

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._reader_waiting = False
            self._taken = threading.Event()

        def on_finalized_text(self, text, stream_end=False):
            super().on_finalized_text(text, stream_end)
            if self._reader_waiting and not stream_end:
                self._taken.wait(self.handoff_timeout)

        def __next__(self):
            self._taken.clear()
            self._reader_waiting = True
            try:
                return super().__next__()
            finally:
                self._reader_waiting = False
                self._taken.set()

        def put(self, value):
            if len(value.shape) > 1:
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.tolist())
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            if text.endswith("\ufffd") or len(text) <= self.print_len:
                return
            printable, self.print_len = text[self.print_len:], len(text)
            if text.endswith("\n"):  # a line is final: start afresh so decoding stays cheap
                self.token_cache, self.print_len = [], 0
            self.on_finalized_text(printable)

    class StopOnEvent(StoppingCriteria):
        def __init__(self, event: threading.Event):
            self.event = event

        def __call__(self, input_ids, scores, **kw):
            return self.event.is_set()

    return TokenStreamer, StopOnEvent


def stream_chat(loaded: Loaded, messages: list[dict], settings: GenerationSettings | None = None,
                stop_event: threading.Event | None = None) -> Iterator[str]:
    """Yield the reply as it grows (the whole text so far each time), token by token."""
    from transformers import StoppingCriteriaList

    settings = settings or GenerationSettings()
    # our own event when none is given: closing this generator must stop generate()
    stop_event = stop_event if stop_event is not None else threading.Event()
    tok = loaded.tokenizer
    prompt = build_prompt(tok, messages, settings)
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False).to(loaded.device)
    token_streamer, stop_on_event = _streaming_classes()
    streamer = token_streamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=300)
    sample = settings.temperature > 0
    gen_kwargs = dict(
        **inputs, streamer=streamer, max_new_tokens=settings.max_new_tokens, do_sample=sample,
        repetition_penalty=settings.repetition_penalty, eos_token_id=loaded.stop_ids,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        stopping_criteria=StoppingCriteriaList([stop_on_event(stop_event)]),
    )
    if sample:
        gen_kwargs.update(temperature=settings.temperature, top_p=settings.top_p,
                          top_k=settings.top_k if settings.top_k > 0 else None)
    text = ""
    for piece in generate_pieces(loaded, gen_kwargs, stop_event):
        text += piece
        yield text


def generate_pieces(loaded: Loaded, gen_kwargs: dict, stop_event: threading.Event,
                    seed: int | None = None) -> Iterator[str]:
    """Run generate() in a thread and yield its streamer's pieces (gen_kwargs["streamer"]);
    one place for the Chat tab (stream_chat) and the serving engine (studio.ship.engine).
    A generate() error is raised here once the stream ends."""
    import torch

    errors: list[BaseException] = []

    def run():
        try:
            with loaded.lock, torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(seed)  # under the lock: no other reply draws from it now
                loaded.model.generate(**gen_kwargs)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the caller below
            errors.append(exc)
            gen_kwargs["streamer"].end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield from gen_kwargs["streamer"]
    finally:
        # Reached on normal end, on an error, and on GeneratorExit when the consumer
        # stops iterating (Stop button, closed tab): without this generate() would keep
        # the model lock and a core busy until max_new_tokens. No join here: a closing
        # consumer must not wait; the thread ends at its next token.
        stop_event.set()
    thread.join()
    if errors:
        raise errors[0]


def reply(loaded: Loaded, prompt: str, settings: GenerationSettings | None = None) -> str:
    out = ""
    for out in stream_chat(loaded, [{"role": "user", "content": prompt}], settings):
        pass
    return out


def compare(a: Loaded, b: Loaded, prompts: list[str], settings: GenerationSettings | None = None) -> list[list[str]]:
    """[prompt, reply of a, reply of b] for each non-empty prompt (a small eval set)."""
    rows = []
    for prompt in (p.strip() for p in prompts):
        if prompt:
            rows.append([prompt, reply(a, prompt, settings), reply(b, prompt, settings)])
    return rows


# -- showing tool calls readably ---------------------------------------------------
# The chat keeps what the model said verbatim (it goes back into the next prompt) but
# shows function calls and results as pretty JSON. The verbatim text rides along in an
# HTML comment the page does not render, so display -> model text is lossless.

_RAW = re.compile(r"\n?<!--raw:([A-Za-z0-9+/=]*)-->\s*$")
_CALL = re.compile(r"^\s*<(functioncall|tool_call)>\s*(.*?)\s*(?:</tool_call>)?\s*(?:<\|endoftext\|>)?\s*$", re.S)
TOOL_PREFIX = "FUNCTION RESPONSE:"  # what a person types to send a tool result (Glaive's marker)


def _loose_json(text: str):
    """JSON, or Glaive's call where arguments is a single-quoted JSON string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    fixed = re.sub(r"'(\{.*?\})'", lambda m: json.dumps(m.group(1)), text, flags=re.S)
    try:
        value = json.loads(fixed)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("arguments"), str):
        try:
            value["arguments"] = json.loads(value["arguments"])
        except ValueError:
            pass
    return value


def _pretty(value) -> str:
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False) + "\n```"


def _with_raw(shown: str, raw: str) -> str:
    return shown + "\n<!--raw:" + base64.b64encode(raw.encode()).decode() + "-->"


def to_display(message: dict) -> dict:
    """A chat message as the page shows it: tool calls and results as pretty JSON."""
    role, content = message["role"], message.get("content") or ""
    if role == "tool":
        value = _loose_json(content)
        shown = "**Function response**\n" + (_pretty(value) if value is not None else content)
        return {"role": "user", "content": _with_raw(shown, TOOL_PREFIX + " " + content)}
    match = _CALL.match(content) if role == "assistant" else None
    if match:
        value = _loose_json(match.group(2))
        if value is not None:
            name = value.get("name", "?") if isinstance(value, dict) else "?"
            return {"role": role, "content": _with_raw(f"**Function call** `{name}`\n" + _pretty(value), content)}
    return {"role": role, "content": content}


def from_display(message: dict) -> dict:
    """The message the model sees for one the page shows (inverse of to_display); a user
    turn starting with FUNCTION RESPONSE: is a tool result."""
    role, content = message["role"], _text(message.get("content"))
    match = _RAW.search(content)
    if match:
        content = base64.b64decode(match.group(1)).decode()
    if role == "user" and content.startswith(TOOL_PREFIX):
        rest = content[len(TOOL_PREFIX):]
        return {"role": "tool", "content": rest[1:] if rest.startswith(" ") else rest}
    return {"role": role, "content": content}


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # gradio may hand back [{"type": "text", "text": ...}]
        return "".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return "" if content is None else str(content)
