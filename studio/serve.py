"""Launching the app: flags and environment, authentication, where it may bind."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

LOCAL = ("127.0.0.1", "localhost", "::1")


def load_auth(auth_file: str | None) -> list[tuple[str, str]] | None:
    """Users from a file (`user:password` per line) or STUDIO_USERNAME/STUDIO_PASSWORD."""
    users = []
    if auth_file:
        for line in Path(auth_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                if ":" not in line:
                    raise SystemExit(f"--auth-file: each line is user:password (bad line: {line[:20]}…)")
                user, pw = line.split(":", 1)
                users.append((user.strip(), pw.strip()))
    elif os.environ.get("STUDIO_USERNAME") and os.environ.get("STUDIO_PASSWORD"):
        users.append((os.environ["STUDIO_USERNAME"], os.environ["STUDIO_PASSWORD"]))
    return users or None


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python app.py", description="Training Studio in the browser.")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true")
    p.add_argument("--runs-dir", default=env("STUDIO_RUNS_DIR"))
    p.add_argument("--demo", action="store_true", default=env("STUDIO_DEMO", "") in ("1", "true"),
                   help="chat only with the configured models: no training, no paths, no uploads")
    p.add_argument("--demo-model", action="append", default=[m for m in env("STUDIO_DEMO_MODELS", "").split(",") if m],
                   help="a model the demo serves (run id or folder); repeatable")
    p.add_argument("--auth-file", default=env("STUDIO_AUTH_FILE"))
    p.add_argument("--trust-remote-code", action="store_true", default=env("STUDIO_TRUST_REMOTE_CODE", "") == "1")
    p.add_argument("--concurrency", type=int, default=int(env("STUDIO_CONCURRENCY", "2")),
                   help="chat requests generated at once; the rest wait in the queue")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    auth = load_auth(args.auth_file)
    on_spaces = bool(os.environ.get("SPACE_ID"))
    host = args.host
    if host not in LOCAL and not auth and not on_spaces:
        print(f"Refusing to serve on {host} without authentication: anyone on the network could train "
              "and read files. Set --auth-file or STUDIO_USERNAME/STUDIO_PASSWORD. Serving on 127.0.0.1.",
              file=sys.stderr)
        host = "127.0.0.1"
    if on_spaces:
        host = "0.0.0.0"  # the Spaces proxy is the only way in
    from studio.ui.app import CSS, AppSettings, build_app

    demo = build_app(AppSettings(runs_dir=args.runs_dir, demo=args.demo, demo_models=tuple(args.demo_model),
                                 trust_remote_code=args.trust_remote_code))
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.launch(server_name=host, server_port=args.port, share=args.share, auth=auth, css=CSS,
                max_file_size="50mb", show_error=True)
    return 0
