"""Evaluations on disk and the processes behind them, like studio.jobs for runs.

runs/<run-id>/eval/<eval-id>/ holds spec.yaml, status.json (state, pid, done/total,
ETA), eval.log, examples.jsonl and summary.json; an evaluation of models that belong to
no run lives under runs/.evals/<eval-id>/. The process is `python -m
studio.evaluate.worker DIR`: no shell, its own process group, stopped as a group. It
waits for the same device lock as a training worker (runs/.device.lock, jobs.LOCK_FILE),
so the one-job-per-device rule is the training queue's, not a second one. No torch here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from studio import jobs
from studio.stopping import stop_group
from studio.evaluate.spec import EvalSpec

EVAL_DIR = "eval"
LOOSE = ".evals"  # evaluations of models that are not runs (not listed as runs: a dot name)
WORKER = "studio.evaluate.worker"


def read_status(eval_dir) -> dict:
    try:
        data = json.loads((Path(eval_dir) / "status.json").read_text())
        return data if isinstance(data, dict) else {"state": "unknown"}
    except (OSError, ValueError):
        return {"state": "unknown"}


def write_status(eval_dir, **fields) -> dict:
    """Merge fields into status.json atomically."""
    path = Path(eval_dir) / "status.json"
    status = {k: v for k, v in read_status(eval_dir).items() if not (k == "state" and v == "unknown")}
    status.update(fields, updated=time.time())
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(status, indent=1))
    os.replace(tmp, path)
    return status


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return stat != "Z" and WORKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, TypeError, IndexError):
        return False


def status(eval_dir) -> dict:
    """status.json, reconciled: an evaluation whose process vanished is failed."""
    st = read_status(eval_dir)
    if st.get("state") in ("queued", "running") and not _alive(st.get("pid")) and \
            time.time() - (st.get("updated") or 0) > 5:
        st = write_status(eval_dir, state="failed", ended=time.time(),
                          error=st.get("error") or "The evaluation process ended without reporting; see eval.log")
    return st


def home(spec: EvalSpec, runs_dir=None) -> Path:
    """Where an evaluation of these models lives: beside the first model that is a run."""
    from studio.evaluate import models

    for ref in spec.models:
        try:
            r = models.resolve(ref, runs_dir)
        except Exception:  # noqa: BLE001 - refused later by checks.plan with its reason
            continue
        if r.run_dir:
            return Path(r.run_dir) / EVAL_DIR
    return jobs.runs_root(runs_dir, writable=True) / LOOSE


def create(spec: EvalSpec, runs_dir=None) -> Path:
    """Check everything (checks.plan: ValueError with every problem), then make the folder."""
    from studio.evaluate import checks

    checks.plan(spec, runs_dir)
    eval_dir = home(spec, runs_dir) / jobs.new_run_id(spec.name)
    eval_dir.mkdir(parents=True)
    spec.save(eval_dir / "spec.yaml")
    root = str(jobs.runs_root(runs_dir))
    write_status(eval_dir, state="queued", created=time.time(), done=0, total=0, runs_dir=root)
    return eval_dir


def start(eval_dir: Path, env: dict | None = None) -> subprocess.Popen:
    eval_dir = Path(eval_dir)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    project_root = str(Path(__file__).resolve().parents[2])
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, full_env.get("PYTHONPATH")) if p)
    with open(eval_dir / "eval.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", WORKER, str(eval_dir)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=os.getcwd(), env=full_env)
    write_status(eval_dir, pid=proc.pid, pgid=proc.pid, launched=time.time())
    threading.Thread(target=_reap, args=(proc, eval_dir), daemon=True).start()
    return proc


def _reap(proc: subprocess.Popen, eval_dir: Path) -> None:
    code = proc.wait()
    if read_status(eval_dir).get("state") not in jobs.TERMINAL:
        write_status(eval_dir, state="failed", ended=time.time(), returncode=code,
                     error=f"The evaluation process ended with code {code}; see eval.log")


def launch(spec: EvalSpec, runs_dir=None, env: dict | None = None) -> Path:
    eval_dir = create(spec, runs_dir)
    start(eval_dir, env)
    return eval_dir


def stop(eval_dir, timeout: float = 10.0) -> dict:
    """SIGTERM to the whole group, SIGKILL after the grace period."""
    st = read_status(eval_dir)
    pgid = st.get("pgid")
    if pgid and _alive(st.get("pid")):
        stop_group(int(pgid), timeout)
    if read_status(eval_dir).get("state") not in jobs.TERMINAL:
        return write_status(eval_dir, state="stopped", ended=time.time())
    return read_status(eval_dir)


def list_evals(runs_dir=None, run: str | None = None) -> list[dict]:
    """Every evaluation (of one run, when named), newest first."""
    root = jobs.runs_root(runs_dir)
    homes = [jobs.run_path(run, runs_dir) / EVAL_DIR] if run else \
        [p / EVAL_DIR for p in root.iterdir() if p.is_dir()] + [root / LOOSE]
    rows = []
    for h in homes:
        if not h.is_dir():
            continue
        for d in h.iterdir():
            if (d / "spec.yaml").is_file():
                st = status(d)
                rows.append({"eval_id": d.name, "path": str(d), "state": st.get("state"),
                             "done": st.get("done", 0), "total": st.get("total", 0),
                             "created": st.get("created") or 0, "error": st.get("error")})
    return sorted(rows, key=lambda r: r["created"], reverse=True)


def read_summary(eval_dir) -> dict | None:
    try:
        return json.loads((Path(eval_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def read_examples(eval_dir) -> list[dict]:
    try:
        lines = (Path(eval_dir) / "examples.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
