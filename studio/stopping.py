"""Stopping a run's processes, and finding them: a run's worker (and, for a multi-process
launch, accelerate and its ranks) is one process group, stopped as a group. Imports
neither gradio nor torch. studio.jobs re-exports every public name.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from studio.rundirs import STOP_REQUEST, TERMINAL, _pid_alive, read_status, record_status


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
    return bool(group_members(pgid))


def stop_group(pgid: int, grace: float = 10.0) -> None:
    """SIGTERM to the whole group, SIGKILL if anything is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_group(pgid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and _group_alive(pgid):
            time.sleep(0.1)
        if not _group_alive(pgid):
            return


def _stat(proc: Path) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, pgid third)."""
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):  # gone meanwhile, or not ours to read
        return None


def running(pid: int) -> bool:
    """True while `pid` runs: a process that exited but was not yet reaped by its parent
    (a zombie, which still answers kill(pid, 0)) counts as gone."""
    stat = _stat(Path(f"/proc/{pid}"))
    return stat is not None and stat[0] != "Z"


def group_members(pgid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            stat = _stat(proc)
            if stat is not None and stat[0] != "Z" and int(stat[2]) == pgid:
                out.append(int(proc.name))
    return out


def worker_pids(run_dir: str | Path) -> list[int]:
    """Live processes running this run's worker (`-m studio.worker RUN_DIR`: the worker,
    or accelerate's launcher and ranks after it exec'd into one), found by their command
    line, so a reader can tell whether a run is still going without trusting
    status.json (which may be damaged and name no pid)."""
    targets = {str(run_dir).encode(), str(Path(run_dir).resolve()).encode()}
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        stat = _stat(proc)
        if stat is not None and stat[0] != "Z" and b"studio.worker" in args and targets & set(args):
            out.append(int(proc.name))
    return out
