"""Run directories and the training processes behind them.

Everything that matters about a run is on disk under runs/<run-id>/ (spec.yaml,
status.json, metrics.jsonl, train.log, checkpoints/, final/), so a page reload, a
second browser or an app restart loses nothing: state is keyed by run id, never held
in this process. Imports neither gradio nor torch.

One job per device: the worker takes an exclusive lock on runs/.device.lock before it
loads anything; a second run waits there in state "queued". The kernel drops the lock
when a worker dies, even by SIGKILL, so the queue never wedges.
"""
from __future__ import annotations

import json
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
from studio.spec import RunSpec

TERMINAL = ("completed", "failed", "stopped")
STOP_REQUEST = "stop_request.json"
LOCK_FILE = ".device.lock"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class JobError(RuntimeError):
    """A refusal with its reason, shown to the person as is."""


def runs_root(runs_dir: str | Path | None = None, writable: bool = False) -> Path:
    """The runs folder (made when missing). A path that is a file, or one that cannot be
    made (or written, when `writable`), is a JobError naming it and the fix, not a
    traceback from deep inside a list or a launch."""
    given = runs_dir or os.environ.get("STUDIO_RUNS_DIR", "runs")
    root = Path(given).expanduser().resolve()
    fix = "choose another with --runs-dir (or STUDIO_RUNS_DIR)"
    try:
        if root.exists() and not root.is_dir():
            raise JobError(f"runs dir '{given}' is not a folder: {fix}")
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobError(f"runs dir '{given}' cannot be created ({exc.strerror or exc}): {fix}") from None
    if writable and not os.access(root, os.W_OK | os.X_OK):
        raise JobError(f"runs dir '{given}' is not writable (permission denied): {fix}, or fix its permissions")
    return root


def check_runs_dir(runs_dir: str | Path | None = None) -> Path:
    """Raise JobError unless runs can be created under runs_dir (for a CLI or app start)."""
    return runs_root(runs_dir, writable=True)


def run_path(run_id: str, runs_dir: str | Path | None = None) -> Path:
    """The directory of a run id, confined to the runs root (no traversal)."""
    root = runs_root(runs_dir)
    candidate = Path(run_id)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        resolved = candidate.parent.resolve() / candidate.name  # a linked run is named by its link
        if resolved.parent != root:
            raise JobError(f"{run_id} is not a run inside {root}")
        run_id = resolved.name
    if not _RUN_ID.match(run_id):
        raise JobError(f"'{run_id}' is not a run id (letters, digits, '.', '_', '-')")
    return root / run_id


# -- status.json -----------------------------------------------------------------


def read_status(run_dir: str | Path) -> dict:
    """status.json checked for shape: {"state": "unknown"} when missing (or not a run dir,
    e.g. the lock file), {"state": "corrupt", "error": why} when not of the documented
    shape (see studio.runfiles), so no reader trips over a hand-edited or damaged file."""
    return runfiles.load_status(Path(run_dir) / "status.json")


def write_status(run_dir: str | Path, **fields) -> dict:
    """Merge fields into status.json atomically (readers never see half a file)."""
    path = Path(run_dir) / "status.json"
    status = read_status(run_dir)
    if status.get("state") in ("unknown", "corrupt"):
        status = {}
    status.update(fields)
    status["updated"] = time.time()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(status, indent=1))
    os.replace(tmp, path)
    return status


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, TypeError, ValueError):  # gone, or no pid at all
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is dead; pid reuse by another program too
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"studio.worker" in cmdline
    except (OSError, IndexError):
        return False


def record_status(run_dir: Path, current: dict, **fields) -> dict:
    """write_status for a reader or a launcher reconciling a run: where status.json can
    no longer be written (the run dir turned read-only, the disk is full) the result is
    returned as known, with why it is not on disk, instead of raising into the caller."""
    try:
        return write_status(run_dir, **fields)
    except OSError as exc:
        merged = {**current, **fields}
        note = f"(status.json could not be updated: {exc.strerror or exc})"
        merged["error"] = f"{merged['error']} {note}" if merged.get("error") else note
        return merged


def status(run_dir: str | Path) -> dict:
    """status.json, reconciled with reality: a run whose worker vanished is failed, with
    the cause the worker left in train.log when it could no longer write status.json."""
    run_dir = Path(run_dir)
    st = read_status(run_dir)
    if st.get("state") in ("running", "queued", "starting") and not _pid_alive(st.get("pid")):
        # give a just-launched worker a moment to write its first status
        if time.time() - (st.get("updated") or 0) > 5:
            st = record_status(run_dir, st, state="failed", ended=time.time(),
                               error=runfiles.failure_from_log(run_dir) or st.get("error") or
                               "The training process ended without reporting "
                               "(killed by a signal, e.g. SIGKILL or the out-of-memory killer). "
                               "See train.log for its last lines.")
    if st.get("state") == "queued":
        st["queue_position"] = queue_position(run_dir)
    return st


def _queue_key(st: dict, name: str) -> tuple:
    # first come, first served: by launch time (a resumed run rejoins at the back), then name
    return (st.get("launched") or st.get("created") or 0.0, name)


def queue_position(run_dir: Path) -> int:
    """1 = next to take the device. Only live queued runs launched earlier count."""
    mine = _queue_key(read_status(run_dir), run_dir.name)
    ahead = 0
    try:
        others = list(run_dir.parent.iterdir())
    except OSError:
        return 1
    for other in others:
        if other == run_dir:
            continue
        st = read_status(other)  # "unknown" for anything that is not a run
        if st.get("state") == "queued" and _queue_key(st, other.name) < mine and _pid_alive(st.get("pid")):
            ahead += 1
    return ahead + 1


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


# -- stopping --------------------------------------------------------------------


def request_stop(run_dir: Path, save: bool) -> None:
    (Path(run_dir) / STOP_REQUEST).write_text(json.dumps({"save": save, "time": time.time()}))


def stop(run_dir: str | Path, save: bool = False, timeout: float = 60.0) -> dict:
    """Stop a run. With save, the worker finishes its current step, saves final/ and
    exits; without, the whole process group gets SIGTERM at once. Either way the group
    is SIGKILLed if anything is still alive after the grace period."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {"state": "unknown"}
    st = read_status(run_dir)
    pgid = st.get("pgid") or st.get("pid")
    try:
        request_stop(run_dir, save)
    except OSError:  # a read-only run dir: the worker cannot be asked, only signalled
        save = False
    if not pgid or not _pid_alive(st.get("pid")):
        if st.get("state") not in TERMINAL:
            return record_status(run_dir, st, state="stopped", ended=time.time())
        return read_status(run_dir)
    if st.get("state") == "queued":
        # still waiting for the device: nothing to save, and it would never see the request
        save = False
        st = record_status(run_dir, st, state="stopped", ended=time.time())
    deadline = time.time() + (timeout if save else 10.0)
    if not save:
        _signal_group(pgid, signal.SIGTERM)
    while time.time() < deadline and _group_alive(pgid):
        time.sleep(0.1)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGTERM)
        time.sleep(2)
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.2)
    now = read_status(run_dir)
    if now.get("state") not in TERMINAL:
        return record_status(run_dir, now, state="stopped", ended=time.time())
    return now


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the group."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if stat[0] != "Z" and int(stat[2]) == pgid:
            return True
    return False


def group_members(pgid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if stat[0] != "Z" and int(stat[2]) == pgid:
                out.append(int(proc.name))
    return out


# -- history ---------------------------------------------------------------------


def list_runs(runs_dir: str | Path | None = None) -> list[dict]:
    """Every run, newest first, with its state and last metrics; a run whose files are
    damaged or unreadable is listed as `corrupt` with the reason in `error`."""
    root = runs_root(runs_dir)
    try:
        entries = sorted(root.iterdir(), reverse=True)
    except OSError as exc:
        raise JobError(f"runs dir '{root}' cannot be listed ({exc.strerror or exc})") from None
    rows = []
    for run_dir in entries:
        try:
            if run_dir.name.startswith(".") or not (run_dir / "spec.yaml").is_file():
                continue
            rows.append(_run_row(run_dir))
        except OSError as exc:  # one unreadable run must not hide the others
            rows.append(_row(run_dir, {**runfiles.corrupt(f"the run cannot be read ({exc.strerror or exc})")}))
    return rows


def _row(run_dir: Path, st: dict, name: str | None = None, method: str = "?", last_loss=None) -> dict:
    started, ended = st.get("started"), st.get("ended")
    return {
        "run_id": run_dir.name, "name": name or run_dir.name, "method": method, "state": st.get("state"),
        "step": st.get("step") or 0, "total": st.get("total") or 0, "last_loss": last_loss,
        "duration_s": round((ended or time.time()) - started, 1) if started else None,
        "has_final": has_final(run_dir), "path": str(run_dir), "error": st.get("error"),
    }


def _run_row(run_dir: Path) -> dict:
    from studio.metrics import read_all

    st = status(run_dir)
    try:
        spec = RunSpec.load(run_dir / "spec.yaml")
        method, name = spec.method.name + ("/" + spec.method.regime if spec.method.regime != "full" else ""), spec.name
    except Exception:  # a hand-edited spec must not hide the other runs
        method, name = "?", run_dir.name
    last_loss = None
    for rec in reversed(read_all(run_dir)):
        if rec.get("loss") is not None:
            last_loss = rec["loss"]
            break
    return _row(run_dir, st, name, method, last_loss)


def has_final(run_dir: str | Path) -> bool:
    """Whether the run has a finished model: final/ with its weights (a save that died
    half-way, e.g. on a full disk, left config.json alone in older runs)."""
    return runfiles.has_weights(Path(run_dir) / "final")


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


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first. The Trainer writes a checkpoint in place and
    its trainer_state.json last, so one without it (or without weights) died mid-save
    and is no point to resume from."""
    found = []
    for path in Path(run_dir, "checkpoints").glob("checkpoint-*"):
        step = path.name.split("-")[-1]
        try:
            if step.isdigit() and (path / "trainer_state.json").is_file() and runfiles.has_weights(path):
                found.append((int(step), path))
        except OSError:  # unreadable: not a checkpoint one could resume from either
            continue
    return [p for _, p in sorted(found)]


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
