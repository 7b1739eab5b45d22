"""Run directories on disk: where runs live, their status.json, and what a run holds.

Everything that matters about a run is on disk under runs/<run-id>/ (spec.yaml,
status.json, metrics.jsonl, train.log, checkpoints/, final/), so every reader here goes
by the files and the live processes, never by state held in this process. Imports
neither gradio nor torch. studio.jobs re-exports every public name.
"""
from __future__ import annotations

import json
import os
import re
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
        # give a just-launched worker a moment to write its first status; a running one
        # that left its cause in train.log (it could not write status.json) is over now
        cause = runfiles.failure_from_log(run_dir) if st.get("state") == "running" else None
        if cause or time.time() - (st.get("updated") or 0) > 5:
            st = record_status(run_dir, st, state="failed", ended=time.time(),
                               error=cause or runfiles.failure_from_log(run_dir) or st.get("error") or
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
