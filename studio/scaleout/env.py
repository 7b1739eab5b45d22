"""Where the scale-out engines live and how their processes are started and stopped.

Flower 1.42 pins fastapi/starlette/uvicorn/typer below the versions Gradio runs on, so
flwr and hivemind live in .venv-scaleout (scripts/setup.sh --dev, or `make
setup-scaleout`), a venv that sees .venv's packages behind its own (a .pth line): the
studio's torch/transformers/peft, Flower's own fastapi. The worker re-executes itself
with that interpreter for a federated or decentralized run (studio.worker)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-scaleout"


def python() -> str:
    """The interpreter that has flwr and hivemind: this one if it does, else .venv-scaleout's."""
    if has_engines():
        return sys.executable
    candidate = VENV / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    raise ImportError("flwr and hivemind are not installed: run `make setup-scaleout` "
                      "(or bash scripts/setup.sh --dev), which makes .venv-scaleout")


def has_engines() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("flwr", "hivemind"))


def quiet_engines() -> None:
    """No traffic off this machine: Flower sends usage events to telemetry.flower.ai
    unless told not to; hubs stay offline as everywhere in the studio."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def child_env() -> dict:
    quiet_engines()
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p])
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        out.pop(key, None)
    return out


def free_address(address: str) -> str:
    """host:port, a free port on host where the port is 0."""
    host, _, port = address.rpartition(":")
    host = host or "127.0.0.1"
    if port in ("", "0"):
        with socket.socket() as s:
            s.bind((host, 0))
            port = str(s.getsockname()[1])
    return f"{host}:{port}"


def spawn(cmd: list[str], log_path: Path) -> subprocess.Popen:
    """A client/peer process: no shell, in the run's process group (so stopping the run
    stops it), its output in its own log beside the run's."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=os.getcwd())
    finally:
        log.close()


def stop_all(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
