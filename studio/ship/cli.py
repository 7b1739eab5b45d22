"""`python -m studio serve MODEL ...`: the OpenAI-compatible API on 127.0.0.1 (or, with
an API key, on the network). Not to be confused with studio/serve.py, which launches the
Gradio app."""
from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time

LOCAL = ("127.0.0.1", "localhost", "::1")


class ServeError(RuntimeError):
    """A refusal with its reason and the fix."""


def check_can_serve(host: str, port: int, api_key: str | None) -> None:
    """Refuse, before loading anything, what would fail or be unsafe once serving."""
    hosting = host not in LOCAL or os.environ.get("STUDIO_DEMO", "") in ("1", "true") or os.environ.get("SPACE_ID")
    if hosting and not api_key:
        raise ServeError(f"--api-key: serving on {host} (hosting mode) needs an API key, or anyone who can reach the "
                         "port can use the model. Pass --api-key KEY or set STUDIO_API_KEY (or bind 127.0.0.1).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"--port: {host}:{port} is already in use (another server?); stop it or pass "
                                 "another --port") from None
            raise ServeError(f"--host: cannot listen on {host}:{port}: {exc.strerror}") from None


class ServerThread:
    """uvicorn in a background thread (tests, the bench, the app's toggle); stop() ends it."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                   timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30) -> "ServerThread":
        self.thread.start()
        deadline = time.time() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise ServeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def cmd_serve(args) -> int:
    from studio.ship.openai_server import Served, create_app, model_id

    api_key = args.api_key or os.environ.get("STUDIO_API_KEY") or None
    try:
        check_can_serve(args.host, args.port, api_key)
        sources = {model_id(m): m for m in args.model}
        served = Served(sources, device=args.device, runs_dir=args.runs_dir,
                        trust_remote_code=args.trust_remote_code)
        for mid in sources:  # load now: a bad model fails here, not at the first request
            served.backend(mid)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - ApiError (unknown model), loading errors: shown, not a traceback
        print(f"error: model: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    import uvicorn

    base = f"http://{args.host}:{args.port}/v1"
    print(f"OpenAI-compatible API at {base} serving {', '.join(sources)}", file=sys.stderr)
    print(f"  from openai import OpenAI; OpenAI(base_url='{base}', api_key='{'<key>' if api_key else 'none'}')",
          file=sys.stderr)
    uvicorn.run(create_app(served, api_key), host=args.host, port=args.port, log_level="info")
    return 0


def add_cli(subparsers) -> None:
    s = subparsers.add_parser("serve", help="serve models over an OpenAI-compatible API",
                              description="Serve runs, model folders or .gguf files at /v1/models, "
                                          "/v1/chat/completions and /v1/completions (streaming too).")
    s.add_argument("model", nargs="+", help="run id, run directory, model folder or .gguf file")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (beyond 127.0.0.1 needs --api-key)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None, help="clients send it as 'Authorization: Bearer KEY' "
                                                   "(default: $STUDIO_API_KEY)")
    s.add_argument("--device", default="cpu", help="cpu or cuda for transformers models")
    s.add_argument("--trust-remote-code", action="store_true")
    s.set_defaults(func=cmd_serve)
