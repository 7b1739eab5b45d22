"""Shared by the scale-out tests (#24): a tiny saved base, a spec, and the worker run as
the app runs it (a subprocess that re-executes itself with .venv-scaleout's interpreter)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from studio import jobs
from studio.scaleout import env
from tests.conftest import TINY_MODEL, spec_from

needs_engines = pytest.mark.skipif(not (env.has_engines() or (env.VENV / "bin" / "python").exists()),
                                   reason="flwr/hivemind not installed: make setup-scaleout")


def tiny_base(folder: Path) -> Path:
    """A random ~1M-parameter Llama saved in transformers format, so adapters name their base."""
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(**TINY_MODEL)
    tok = load_tokenizer(spec)
    model = build_or_load(spec, tok, None)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def scaleout_spec(base: Path, sources: list[str], train: dict, name: str = "scale", max_rows=None):
    return spec_from(name=name, model={"source": "pretrained", "name_or_path": str(base)},
                     data={"sources": [{"path": s} for s in sources], "eval_fraction": 0.1, "max_rows": max_rows},
                     method={"name": "sft", "regime": "lora", "lora_r": 8, "lora_dropout": 0.0},
                     train={"batch_size": 8, "learning_rate": 3e-3, "log_every": 1, **train})


@contextmanager
def start_worker(spec, runs: Path):
    """The worker as the app starts it, in its own process group; on leaving the block,
    however the test ended, the run is stopped as the studio stops it (studio.jobs.stop:
    the whole group) and whatever is still in the group (a killed peer's p2pd, say) is
    killed. On a normal exit it then checks the group is empty, so a test cannot leave
    peers, clients or daemons running."""
    run_dir = jobs.create_run(spec, runs)
    with open(run_dir / "train.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "studio.worker", str(run_dir)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield run_dir, proc
    finally:
        left = stop_worker(run_dir, proc)
    assert not left, f"still running after the run was stopped: {left}"


def stop_worker(run_dir: Path, proc, grace: float = 10.0) -> list[str]:
    """Stop the run through studio.jobs.stop, then kill the rest of its group (pgid =
    the worker's pid: start_new_session). Returns the processes still alive after that."""
    pgid = proc.pid
    jobs.stop(run_dir, save=False, timeout=grace)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):  # what jobs.stop left (it skips a run whose worker exited)
        deadline = time.time() + grace / 2
        while jobs.group_members(pgid) and time.time() < deadline:
            _killpg(pgid, sig)
            time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return describe(jobs.group_members(pgid))


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe(pids: list[int]) -> list[str]:
    """pid: command line, for a message that says what was left."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd[:200]}")
    return out


def finished(run_dir: Path, proc, timeout: float = 400) -> list[dict]:
    proc.wait(timeout=timeout)
    st = jobs.read_status(run_dir)
    log = (run_dir / "train.log").read_text(errors="replace")[-3000:]
    assert proc.returncode == 0 and st.get("state") == "completed", f"{st.get('error')}\n{log}"
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def adapter(final: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(final / "adapter_model.safetensors"))
