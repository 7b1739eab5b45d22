"""Token streams for the server and the GGUF check: one request's prompt in, text pieces
out, with exact token counts, stop strings and a finish reason.

Two backends share the interface: a transformers model from the studio's ModelCache
(the Chat tab's generate path: same streamer, same stop ids, same per-model lock) and a
GGUF file through llama.cpp's runtime (llama_cpp.Llama). Each generation holds its
model's lock for the whole reply, so concurrent requests queue instead of interleaving.
"""
from __future__ import annotations

import atexit
import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Params:
    max_tokens: int = 256
    temperature: float = 1.0  # the OpenAI API's default; 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


class StopScanner:
    """Cuts the text at the first stop string. A piece that could be the start of a stop
    string is held back until the next piece shows whether it is (the client must never
    see part of a stop string)."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0
        self.hit = False

    def feed(self, piece: str) -> str:
        self.text += piece
        found = [at for at in (self.text.find(s) for s in self.stops) if at >= 0]
        if found:  # the earliest stop, whichever string it is
            self.hit = True
            self.text = self.text[:min(found)]
            return self._release(len(self.text))
        hold = max((len(s) - 1 for s in self.stops), default=0)
        safe = len(self.text)
        for k in range(min(hold, len(self.text)), 0, -1):
            if any(s.startswith(self.text[-k:]) for s in self.stops):
                safe = len(self.text) - k
                break
        return self._release(safe)

    def flush(self) -> str:
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        out, self.sent = self.text[self.sent:upto], max(self.sent, upto)
        return out


def run(backend, prompt: str, params: Params, usage: Usage, stop_event: threading.Event | None = None
        ) -> Iterator[str]:
    """Text deltas of one reply with stop strings applied; `usage` is filled in as it goes."""
    stop_event = stop_event or threading.Event()
    scanner = StopScanner(params.stop)
    try:
        for piece in backend.pieces(prompt, params, usage, stop_event):
            out = scanner.feed(piece)
            if out:
                yield out
            if scanner.hit:
                break
        if not scanner.hit:
            rest = scanner.flush()
            if rest:
                yield rest
    finally:
        stop_event.set()  # a closed stream (client gone) stops generation at its next token
    usage.finish_reason = "stop" if scanner.hit or usage.completion_tokens < params.max_tokens else "length"


@functools.lru_cache(maxsize=None)
def _counting_streamer():
    from studio.inference import _streaming_classes

    token_streamer = _streaming_classes()[0]

    class CountingStreamer(token_streamer):
        """The Chat tab's streamer, counting the generated tokens for `usage`."""

        def __init__(self, *args, usage: Usage, **kwargs):
            super().__init__(*args, **kwargs)
            self.usage = usage

        def put(self, value):
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                self.usage.completion_tokens += int(value.numel())
            super().put(value)

    return CountingStreamer


class HFBackend:
    """A transformers model loaded by studio.inference (run, merged folder, adapter)."""

    kind = "transformers"

    def __init__(self, loaded):
        self.loaded = loaded

    def chat_prompt(self, messages: list[dict]) -> str:
        from studio.inference import GenerationSettings, build_prompt

        return build_prompt(self.loaded.tokenizer, messages, GenerationSettings())

    def count(self, text: str) -> int:
        return len(self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def pieces(self, prompt: str, p: Params, usage: Usage, stop_event: threading.Event) -> Iterator[str]:
        # the same generate call as inference.stream_chat, so a greedy reply is the Chat tab's
        from transformers import StoppingCriteriaList

        from studio.inference import _streaming_classes, generate_pieces

        loaded, tok = self.loaded, self.loaded.tokenizer
        inputs = tok(prompt, return_tensors="pt", add_special_tokens=False).to(loaded.device)
        usage.prompt_tokens = int(inputs["input_ids"].shape[1])
        streamer = _counting_streamer()(tok, skip_prompt=True, skip_special_tokens=True, timeout=300, usage=usage)
        sample = p.temperature > 0
        kwargs = dict(**inputs, streamer=streamer, max_new_tokens=p.max_tokens, do_sample=sample,
                      repetition_penalty=p.repetition_penalty, eos_token_id=loaded.stop_ids,
                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                      stopping_criteria=StoppingCriteriaList([_streaming_classes()[1](stop_event)]))
        if sample:
            kwargs.update(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k if p.top_k > 0 else None)
        yield from generate_pieces(loaded, kwargs, stop_event, seed=p.seed)


class GGUFBackend:
    """A .gguf file through llama.cpp's runtime. The prompt is formatted with the chat
    template stored in the file (what llama.cpp and Ollama users get)."""

    kind = "gguf"

    def __init__(self, path: str | Path, n_ctx: int = 0, n_threads: int | None = None):
        from llama_cpp import Llama

        self.path = Path(path)
        self.llama = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        # freed before the interpreter tears down llama_cpp's module (its __del__ then fails noisily)
        atexit.register(self.llama.close)
        self.lock = threading.Lock()
        meta = self.llama.metadata
        self.template = meta.get("tokenizer.chat_template")
        self.eog = {i for i in range(self.llama.n_vocab()) if self._is_eog(i)}

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(self.llama.model), token))

    def chat_prompt(self, messages: list[dict]) -> str:
        if not self.template:
            return messages[-1]["content"] if messages else ""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.template).render(messages=messages, add_generation_prompt=True,
                                                     bos_token="", eos_token="")

    def tokenize(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode(), add_bos=False, special=True)

    def count(self, text: str) -> int:
        return len(self.tokenize(text))

    def token_ids(self, ids: list[int], p: Params, stop_event: threading.Event) -> Iterator[int]:
        """Generated token ids (end-of-generation excluded) for a prompt given as ids."""
        with self.lock:
            if p.seed is not None:
                self.llama.set_seed(p.seed)
            n = 0
            for token in self.llama.generate(ids, temp=p.temperature, top_p=p.top_p, top_k=p.top_k,
                                             repeat_penalty=p.repetition_penalty, reset=True):
                if token in self.eog or stop_event.is_set():
                    return
                yield token
                n += 1
                if n >= p.max_tokens:
                    return

    def greedy(self, ids: list[int], max_tokens: int) -> list[int]:
        """The greedy reply to a prompt given as ids, end-of-generation excluded: the one
        place the parity check and `studio eval` generate from a GGUF."""
        return list(self.token_ids(ids, Params(max_tokens=max_tokens, temperature=0.0), threading.Event()))

    def pieces(self, prompt: str, p: Params, usage: Usage, stop_event: threading.Event) -> Iterator[str]:
        ids = self.tokenize(prompt)
        usage.prompt_tokens = len(ids)
        out: list[int] = []
        shown = 0
        for token in self.token_ids(ids, p, stop_event):
            out.append(token)
            usage.completion_tokens += 1
            try:  # a piece may end inside a UTF-8 character: wait for the rest of it
                text = self.llama.detokenize(out).decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(text) > shown:
                yield text[shown:]
                shown = len(text)


def open_backend(source: str, cache=None, device: str | None = None, runs_dir: str | None = None,
                 trust_remote_code: bool = False):
    """The backend for a run id, model folder or .gguf file."""
    if str(source).endswith(".gguf"):
        if not Path(source).is_file():
            raise ValueError(f"model: '{source}' does not exist")
        return GGUFBackend(source)
    from studio.inference import ModelCache

    cache = cache or ModelCache(capacity=4)
    return HFBackend(cache.get(source, device=device or "cpu", runs_dir=runs_dir,
                               trust_remote_code=trust_remote_code))
