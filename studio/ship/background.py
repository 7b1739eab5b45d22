"""The Export tab's "Serve (OpenAI API)" toggle: `python -m studio serve` as a child
process of the app, on 127.0.0.1 only.

One server per app process (it is a server-wide resource, like the Chat tab's model
cache): no shell, its own process group (stopped as a group on toggle off), stopped at
the app's exit (atexit), and it ends itself if the app dies without running atexit
(studio.ship._serve_child watches its parent). The API key travels in the child's
environment (STUDIO_API_KEY), never on its command line where `ps` shows it.
"""
from __future__ import annotations

import atexit
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from studio import jobs
from studio.ship.cli import ServeError, check_can_serve

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def check_port(port) -> int:
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ServeError("port: a whole number between 1024 and 65535 (e.g. 8000)") from None
    if not 1024 <= port <= 65535:
        raise ServeError(f"port: {port} is outside 1024-65535; choose e.g. 8000")
    return port


def command(source: str, port, api_key: bool, runs_dir: str | None = None) -> str:
    """The command to copy (the key as $STUDIO_API_KEY: a page never echoes a secret)."""
    parts = ["python", "-m", "studio", "serve", source, "--port", str(port)]
    if runs_dir:
        parts += ["--runs-dir", str(runs_dir)]
    text = shlex.join(parts)
    return text + ' --api-key "$STUDIO_API_KEY"' if api_key else text


class BackgroundServer:
    def __init__(self, runs_dir: str | None = None):
        self.runs_dir = runs_dir
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.source = ""
        self.keyed = False
        self._lock = threading.Lock()
        self._log: Path | None = None
        atexit.register(self.stop)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self, source: str, source_dir: Path, port, api_key: str = "", hosted: bool = False,
              timeout: float = 300) -> str:
        """Start serving `source_dir`; returns the base URL once the port answers."""
        api_key = (api_key or "").strip()
        port = check_port(port)
        if hosted and not api_key:
            raise ServeError("API key: this studio is hosted, so the API needs a key (clients send it as "
                             "'Authorization: Bearer KEY'); type one and switch the server on again")
        with self._lock:
            if self.running():
                raise ServeError(f"a server already runs at {self.base_url} ({self.source}); switch it off first")
            check_can_serve(HOST, port, api_key or None)  # port in use: said now, not in a log
            self._log = jobs.runs_root(self.runs_dir) / f".serve-{port}.log"  # dot: not a run
            cmd = [sys.executable, "-m", "studio.ship._serve_child", str(os.getpid()), str(source_dir),
                   "--host", HOST, "--port", str(port)]
            env = {**os.environ, "STUDIO_API_KEY": api_key} if api_key else \
                {k: v for k, v in os.environ.items() if k != "STUDIO_API_KEY"}
            with open(self._log, "wb") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=env, cwd=REPO_ROOT, start_new_session=True)
            self.port, self.source, self.keyed = port, source, bool(api_key)
        self._wait_ready(timeout)
        return self.base_url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.running():
                tail = self.log_tail()
                self.stop()
                raise ServeError(f"the server stopped while starting:\n{tail}")
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.3)
        self.stop()
        raise ServeError(f"the server did not answer on port {self.port} within {timeout:.0f} s; it was stopped")

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").strip().splitlines()[-lines:]) if self._log else ""
        except OSError:
            return ""

    def stop(self) -> bool:
        """Stop the server's whole process group; True when one was running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return False
        was = proc.poll() is None
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # the group may hold more than the leader (reaped above): make sure none is left
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return was

    def status(self) -> str:
        if not self.running():
            return "No API server is running."
        key = "with the API key you set" if self.keyed else "no API key (local only)"
        client_key = "os.environ['STUDIO_API_KEY']" if self.keyed else "'none'"
        return (f"**Serving** `{self.source}` at `{self.base_url}` ({key}); pid {self.proc.pid}.\n\n"
                f"```python\nfrom openai import OpenAI\nclient = OpenAI(base_url=\"{self.base_url}\", "
                f"api_key={client_key})\n```")
