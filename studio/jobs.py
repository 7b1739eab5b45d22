"""Run directories and the training processes behind them.

Everything that matters about a run is on disk under runs/<run-id>/ (spec.yaml,
status.json, metrics.jsonl, train.log, checkpoints/, final/), so a page reload, a
second browser or an app restart loses nothing: state is keyed by run id, never held
in this process. Imports neither gradio nor torch.

One job per device: the worker takes an exclusive lock on runs/.device.lock before it
loads anything; a second run waits there in state "queued". The kernel drops the lock
when a worker dies, even by SIGKILL, so the queue never wedges.

This module launches, resumes and deletes runs; reading run directories lives in
studio.rundirs and stopping process groups in studio.stopping. Every name of theirs is
importable from here too (`jobs.status`, `jobs.stop`, ...), as the rest of the studio
uses them.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from studio import runfiles
from studio.rundirs import (  # noqa: F401 - re-exported: studio.jobs is the public face
    _RUN_ID, LOCK_FILE, STOP_REQUEST, TERMINAL, JobError, _pid_alive, _queue_key, _row, _run_row, check_runs_dir,
    checkpoints, has_final, latest_checkpoint, list_runs, queue_position, read_status, record_status,
    run_path, runs_root, status, write_status,
)
from studio.spec import RunSpec
from studio.stopping import (  # noqa: F401 - re-exported
    _group_alive, _signal_group, group_members, request_stop, stop, worker_pids,
)


# -- launching -------------------------------------------------------------------


def new_run_id(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe[:40]}-{secrets.token_hex(2)}"


def preflight(spec: RunSpec) -> list[str]:
    """Every reason not to start: the spec's own problems, then whether this machine can
    launch its process layout and hold it in memory (cheap: no model is built)."""
    from studio.data.preflight import data_problems
    from studio.launch import fit_problems, launch_problems

    problems = [str(p) for p in spec.validate()]
    if problems:
        return problems
    # a sample of every local data source, read here so a file the method cannot use is
    # refused before a run directory or a worker exists
    return launch_problems(spec) + fit_problems(spec) + [str(p) for p in data_problems(spec)]


def create_run(spec: RunSpec, runs_dir: str | Path | None = None) -> Path:
    from studio import runref

    spec = runref.resolve(spec, runs_dir)  # run:<name> -> that run's final/ in this runs folder
    problems = preflight(spec)
    if problems:
        raise JobError("The run was not started:\n" + "\n".join(f"- {p}" for p in problems))
    run_dir = runs_root(runs_dir, writable=True) / new_run_id(spec.name)
    (run_dir / "checkpoints").mkdir(parents=True)
    spec.save(run_dir / "spec.yaml")
    write_status(run_dir, state="queued", created=time.time(), step=0, total=spec.train.max_steps)
    return run_dir


def worker_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "studio.worker", str(run_dir)]


def start(run_dir: Path, env: dict | None = None) -> subprocess.Popen:
    """Start the worker for an existing run dir: no shell, its own process group, output
    to train.log (a file, not a pipe, so the run outlives this process)."""
    run_dir = Path(run_dir)
    (run_dir / STOP_REQUEST).unlink(missing_ok=True)
    log = open(run_dir / "train.log", "ab")
    log.write(runfiles.START_MARK.encode() + b"\n")  # failure_from_log reads only this start's causes
    log.flush()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    project_root = str(Path(__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, full_env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        worker_command(run_dir), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=os.getcwd(), env=full_env,
    )
    log.close()
    write_status(run_dir, pid=proc.pid, pgid=proc.pid, state="queued", launched=time.time())
    # Reap the child as soon as it ends (no zombie), and record a death it could not report.
    threading.Thread(target=_reap, args=(proc, run_dir), daemon=True).start()
    return proc


def _reap(proc: subprocess.Popen, run_dir: Path) -> None:
    code = proc.wait()
    st = read_status(run_dir)
    if st.get("state") not in TERMINAL:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        cause = runfiles.failure_from_log(run_dir)  # the worker's own words, if it left them
        record_status(run_dir, st, state="failed", ended=time.time(), returncode=code,
                      error=cause or f"The training process was ended by {how} before it finished. "
                      "See train.log for its last lines.")


def launch(spec: RunSpec, runs_dir: str | Path | None = None, env: dict | None = None) -> Path:
    """Validate, create the run directory and start its worker. Returns the run dir."""
    run_dir = create_run(spec, runs_dir)
    start(run_dir, env)
    return run_dir



# -- deleting and resuming ---------------------------------------------------------


def delete_run(run_dir: str | Path) -> str:
    """Delete a run; returns what was done. A run that is a symlink (to a run kept
    elsewhere) loses the link only: the studio deletes what it owns under the runs
    folder, and following the link would delete wherever it points (a link to a home
    folder would wipe it)."""
    run_dir = Path(run_dir)
    if not run_dir.is_symlink() and not run_dir.is_dir():
        raise JobError(f"No run '{run_dir.name}' in {run_dir.parent}.")
    if status(run_dir).get("state") in ("running", "queued"):
        raise JobError("Stop the run before deleting it.")
    if run_dir.is_symlink():
        target = os.readlink(run_dir)
        run_dir.unlink()
        return f"removed the link {run_dir} (it pointed to {target}, whose files were kept)"
    try:
        shutil.rmtree(run_dir)
    except OSError as exc:
        raise JobError(f"{run_dir.name} could not be deleted ({exc.strerror or exc}): check its permissions") from None
    return f"deleted: {run_dir}"



def resume(run_dir: str | Path, max_steps: int | None = None, with_optimizer: bool = True,
           env: dict | None = None) -> subprocess.Popen:
    """Continue a stopped/failed/completed run in place from its latest checkpoint,
    optionally extending max_steps. Metrics keep appending to the same file."""
    run_dir = Path(run_dir)
    if status(run_dir).get("state") in ("running", "queued"):
        raise JobError("The run is still going; stop it before resuming.")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise JobError("No checkpoint to resume from: set train.save_every, or stop with 'stop and save'.")
    spec = RunSpec.load(run_dir / "spec.yaml")
    spec.train.resume_from = str(ckpt)
    spec.train.resume_optimizer = with_optimizer
    if max_steps:
        spec.train.max_steps = max_steps
    try:
        spec.save(run_dir / "spec.yaml")
        write_status(run_dir, state="queued", error=None, ended=None, total=spec.train.max_steps)
        return start(run_dir, env)
    except OSError as exc:
        raise JobError(f"{run_dir.name} cannot be resumed: its folder is not writable ({exc.strerror or exc})") from None

