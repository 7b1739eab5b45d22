"""An OpenAI-compatible API on the studio's inference: /v1/models, /v1/chat/completions
and /v1/completions, streamed as server-sent events like OpenAI's.

FastAPI (which Gradio already ships) parses HTTP; this module only maps the API's JSON
onto studio.ship.engine. Models: runs and folders through the Chat tab's ModelCache,
.gguf files through llama.cpp's runtime. Replies of one model are generated one at a
time (its lock), each into its own stream, so concurrent clients never share tokens.
"""

import hmac
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field

from studio.ship.engine import HFBackend, Params, Usage, open_backend, run

DEFAULT_MAX_TOKENS = 256


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we have no use for (user, logit_bias=None)
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)  # not OpenAI's; llama.cpp and vLLM servers accept it too
    repetition_penalty: float = Field(default=1.0, gt=0)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict | None = None

    def params(self) -> Params:
        if self.n != 1:
            raise ApiError(400, "n: only n=1 is supported; send one request per reply", "n")
        if self.presence_penalty or self.frequency_penalty:
            raise ApiError(400, "presence_penalty/frequency_penalty: not supported; use repetition_penalty "
                                "(1.0 = off, 1.1 = mild)", "frequency_penalty")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise ApiError(400, "stop: at most 4 stop sequences", "stop")
        return Params(max_tokens=self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
                      temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                      repetition_penalty=self.repetition_penalty, stop=stop, seed=self.seed)


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "authentication_error" if self.status == 401 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def _text(content) -> str:
    """Message content as text: a string, or OpenAI's list of parts (text parts only)."""
    if isinstance(content, list):
        if any(isinstance(c, dict) and c.get("type") not in (None, "text") for c in content):
            raise ApiError(400, "messages: only text content is supported (no images or audio)", "messages")
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return "" if content is None else str(content)


class Served:
    """The models this server answers for, by id; loaded on first use (once)."""

    def __init__(self, sources: dict[str, str], cache=None, device: str = "cpu", runs_dir: str | None = None,
                 trust_remote_code: bool = False):
        from studio.inference import ModelCache

        self.sources = dict(sources)
        self.cache = cache or ModelCache(capacity=max(2, len(sources)))
        self.device, self.runs_dir, self.trust_remote_code = device, runs_dir, trust_remote_code
        self._gguf: dict[str, Any] = {}
        self._lock = threading.Lock()

    def loaded_backend(self, model_id: str):
        """The backend when its model is already in memory (no loading, so the event loop
        may ask), else None."""
        source = self.sources.get(model_id)
        if source is None:
            return None
        if source.endswith(".gguf"):
            return self._gguf.get(model_id)
        loaded = self.cache.peek(source, runs_dir=self.runs_dir)
        return HFBackend(loaded) if loaded is not None and loaded.device == self.device else None

    def backend(self, model_id: str):
        if model_id not in self.sources:
            raise ApiError(404, f"model: '{model_id}' is not served here; GET /v1/models lists "
                                f"{', '.join(self.sources)}", "model", "model_not_found")
        source = self.sources[model_id]
        if source.endswith(".gguf"):
            with self._lock:  # a GGUF is loaded once and kept (the ModelCache holds transformers models)
                if model_id not in self._gguf:
                    self._gguf[model_id] = open_backend(source)
                return self._gguf[model_id]
        return open_backend(source, cache=self.cache, device=self.device, runs_dir=self.runs_dir,
                            trust_remote_code=self.trust_remote_code)


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _stream(kind: str, model_id: str, backend, prompt: str, req: _Sampling):
    """The SSE body of a streamed reply: one chunk per text piece, then the finish reason,
    the usage (when asked with stream_options.include_usage) and [DONE]."""
    params = req.params()
    rid, created, usage = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}", int(time.time()), Usage()
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(piece: str | None, finish: str | None = None, first: bool = False) -> dict:
        if kind == "chat":
            delta = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        return {"id": rid, "object": obj, "created": created, "model": model_id, "choices": [choice]}

    def body():
        if kind == "chat":
            yield _sse(chunk(None, first=True))
        for piece in run(backend, prompt, params, usage):
            yield _sse(chunk(piece))
        yield _sse(chunk(None, usage.finish_reason))
        if (req.stream_options or {}).get("include_usage"):
            yield _sse({"id": rid, "object": obj, "created": created, "model": model_id, "choices": [],
                        "usage": usage.as_dict()})
        yield "data: [DONE]\n\n"

    return body()


async def _in_thread(events):
    """Iterate a blocking generator in one thread of its own and hand its items to the event
    loop. Starlette would otherwise run each next() as a separate thread-pool task: two
    thread switches per token, which with a small model cost as much as the token."""
    import asyncio

    loop, queue, done = asyncio.get_running_loop(), asyncio.Queue(), object()
    stop = threading.Event()

    def pump():
        try:
            for item in events:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():  # the client went away: end the reply (frees the model)
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the loop below
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            events.close()
            loop.call_soon_threadsafe(queue.put_nowait, done)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            # what queued up while the last write went out leaves in one write: fewer
            # socket sends when tokens come faster than a client reads
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            texts = [item for item in items if isinstance(item, str)]
            if texts:
                yield "".join(texts)
            for item in items:
                if isinstance(item, BaseException):
                    raise item
            if items[-1] is done:
                return
    finally:
        stop.set()


def _whole(kind: str, model_id: str, backend, prompt: str, req: _Sampling) -> dict:
    usage = Usage()
    text = "".join(run(backend, prompt, req.params(), usage))
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": usage.finish_reason}
        rid, obj = f"chatcmpl-{uuid.uuid4().hex}", "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": usage.finish_reason}
        rid, obj = f"cmpl-{uuid.uuid4().hex}", "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model_id, "choices": [choice],
            "usage": usage.as_dict()}


def create_app(served: Served, api_key: str | None = None):
    """The FastAPI app. With `api_key`, every /v1 route wants `Authorization: Bearer KEY`."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    async def check_key(request: Request) -> None:  # async: a plain def would cost a thread hop per request
        if not api_key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "Missing or wrong API key: send 'Authorization: Bearer <key>' (the key the "
                                "server was started with)", code="invalid_api_key")

    app = FastAPI(title="Training Studio OpenAI-compatible API", dependencies=[Depends(check_key)])

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return JSONResponse(ApiError(400, f"{field or 'body'}: {first.get('msg', 'invalid request')}", field).body(),
                            status_code=400)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "training-studio"}
                                           for m in served.sources]}

    async def answer(kind: str, req: _Sampling, prompt_of):
        req.params()  # refuse bad parameters before loading anything
        backend = served.loaded_backend(req.model) or await run_in_threadpool(served.backend, req.model)
        prompt = prompt_of(backend)
        if req.stream:
            body = _in_thread(_stream(kind, req.model, backend, prompt, req))
            return StreamingResponse(body, media_type="text/event-stream")
        return await run_in_threadpool(_whole, kind, req.model, backend, prompt, req)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        msgs = [{"role": m.get("role", "user"), "content": _text(m.get("content"))} for m in req.messages]
        return await answer("chat", req, lambda b: b.chat_prompt(msgs))

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        if isinstance(req.prompt, list) and len(req.prompt) != 1:
            raise ApiError(400, "prompt: send one prompt per request", "prompt")
        prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
        return await answer("text", req, lambda _b: prompt)

    return app


def model_id(source: str) -> str:
    """The id clients send for a source: its name (a run id, a folder's or file's name)."""
    path = Path(source)
    if path.name == "final" and path.parent.name:
        return path.parent.name
    return path.name or str(source)
