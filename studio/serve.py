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
    p.add_argument("--trust-remote-code", action="store_true", default=env("STUDIO_TRUST_REMOTE_CODE", "") == "1",
                   help="let people using the page turn on model.trust_remote_code (runs the model folder's code)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="hosted mode: another folder data may be read from (repeatable; also STUDIO_DATA_ROOTS)")
    p.add_argument("--concurrency", type=int, default=int(env("STUDIO_CONCURRENCY", "2")),
                   help="chat requests generated at once; the rest wait in the queue")
    p.add_argument("--cache-size", type=int, default=int(env("STUDIO_CHAT_CACHE", "2")),
                   help="models kept loaded for chat (least recently used unloaded first)")
    p.add_argument("--max-upload", default=env("STUDIO_MAX_UPLOAD", "50mb"), help="largest file a person may upload")
    return p.parse_args(argv)


def bind_host(host: str, auth, demo: bool, on_spaces: bool) -> tuple[str, str]:
    """(host to bind, message for the person or ""). Without authentication only the
    demo (chat with fixed models: nothing to train, no paths) may face the network."""
    if on_spaces:
        return "0.0.0.0", ""  # the Spaces proxy is the only way in
    if host in LOCAL or auth or demo:
        return host, ""
    return "127.0.0.1", (f"Refusing to serve on {host} without authentication: anyone on the network could train "
                         "and read files. Set --auth-file or STUDIO_USERNAME/STUDIO_PASSWORD (or use --demo). "
                         "Serving on 127.0.0.1 only.")


def launch_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for Blocks.launch (tests launch with the same ones)."""
    auth = load_auth(args.auth_file)
    host, message = bind_host(args.host, auth, args.demo, bool(os.environ.get("SPACE_ID")))
    if message:
        print(message, file=sys.stderr)
    return dict(server_name=host, server_port=args.port, share=args.share, auth=auth, show_error=True,
                # the demo has no upload widget: refuse what reaches /upload anyway
                max_file_size=1 if args.demo else args.max_upload,
                max_threads=max(8, 4 * args.concurrency))


def export_policy(args: argparse.Namespace) -> bool:
    """Whether this server is hosted (studio.policy), put in the environment that the
    UI's loaders and every worker it starts read, so they re-check the same rules."""
    from studio import policy

    hosted = policy.is_hosted_launch(args.host, load_auth(args.auth_file), args.demo, args.share,
                                     bool(os.environ.get("SPACE_ID")))
    os.environ[policy.HOSTED_ENV] = "1" if hosted else "0"
    os.environ[policy.REMOTE_CODE_ENV] = "1" if args.trust_remote_code else "0"
    roots = [r for r in os.environ.get("STUDIO_DATA_ROOTS", "").split(os.pathsep) if r] + list(args.data_root)
    os.environ["STUDIO_DATA_ROOTS"] = os.pathsep.join(roots)
    # the demo's models are the operator's choice: loadable wherever they are
    demo_dirs = [str(Path(m).expanduser().resolve()) for m in args.demo_model if Path(m).expanduser().is_dir()]
    os.environ[policy.MODEL_ROOTS_ENV] = os.pathsep.join(demo_dirs)
    if args.runs_dir:
        os.environ["STUDIO_RUNS_DIR"] = args.runs_dir
    return hosted


def build(args: argparse.Namespace):
    from studio.ui.app import AppSettings, build_app

    if args.demo and not args.demo_model:
        raise SystemExit("--demo: name the model(s) to serve with --demo-model RUN_OR_FOLDER (or STUDIO_DEMO_MODELS)")
    hosted = export_policy(args)
    demo = build_app(AppSettings(runs_dir=args.runs_dir, demo=args.demo, demo_models=tuple(args.demo_model),
                                 trust_remote_code=args.trust_remote_code, chat_cache_size=args.cache_size,
                                 hosted=hosted))
    # Generation runs at most `concurrency` at once; up to 64 more wait their turn,
    # beyond that visitors are told the queue is full instead of piling up memory.
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    return demo


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    options = launch_options(args)
    if args.demo:
        print(f"Demo mode: chat only with {', '.join(args.demo_model) or 'no model'}; no training, paths or uploads.",
              file=sys.stderr)
    from studio.ui.app import CSS

    build(args).launch(css=CSS, **options)
    return 0
