"""The files of a run directory, read as untrusted and written so that a crash leaves
nothing half-done. Imports neither torch nor gradio (the UI reads runs through this).

status.json is written by the worker and the launcher, but a person (or a full disk, a
bad sync, another program) can leave anything there: every reader goes through
`load_status`, which returns a dict of the documented shape or one saying `corrupt` with
the reason, never raises on content.

A folder the studio writes (final/, an export) is written under a temporary sibling name
and renamed into place only when complete (`atomic_folder`), so a crash or a full disk
mid-save leaves no folder that looks finished; `has_weights` is the check readers use on
folders written elsewhere (by the Trainer, by an older studio).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

STATES = ("queued", "starting", "running", "completed", "failed", "stopped")
# A line the worker prints to train.log (its stderr, an fd opened before the run) when it
# fails: train.log stays writable when status.json no longer is (a run directory turned
# read-only), so the launcher and the readers can still learn the real cause from it.
FAILURE_MARK = "studio-failure: "
START_MARK = "studio-start"  # written by the launcher before each start (resume appends)
_PID_MAX = 1 << 22  # Linux's largest pid_max: anything above is not a pid (and overflows kill())

_INT_FIELDS = ("step", "total", "num_processes", "returncode", "queue_position", "peak_memory_bytes")
_TIME_FIELDS = ("created", "launched", "started", "ended", "updated", "epoch")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def status_problem(data) -> str | None:
    """Why `data` is not a status of the documented shape (None when it is). Unknown
    keys are allowed (newer studios may add some); known ones must have their type."""
    if not isinstance(data, dict):
        return f"status.json holds {type(data).__name__ if data is not None else 'null'}, not a JSON object"
    state = data.get("state")
    if state not in STATES:
        return f"status.json: state {state!r} is not one of {', '.join(STATES)}"
    for key in ("pid", "pgid"):
        value = data.get(key)
        if value is not None and not (_is_int(value) and 0 < value < _PID_MAX):
            return f"status.json: {key} {value!r} is not a process id"
    for key in _INT_FIELDS:
        value = data.get(key)
        if value is not None and not (_is_int(value) and value >= -255):
            return f"status.json: {key} {value!r} is not a whole number"
    for key in _TIME_FIELDS:
        value = data.get(key)
        if value is not None and not _is_number(value):
            return f"status.json: {key} {value!r} is not a number"
    if data.get("error") is not None and not isinstance(data["error"], str):
        return "status.json: error is not text"
    tb = data.get("traceback")
    if tb is not None and not (isinstance(tb, list) and all(isinstance(x, str) for x in tb)):
        return "status.json: traceback is not a list of lines"
    return None


def corrupt(reason: str) -> dict:
    return {"state": "corrupt", "error": f"{reason}. The run's other files are kept; fix or delete the run."}


def load_status(path: Path) -> dict:
    """status.json as a dict of the documented shape; {"state": "unknown"} when there is
    none (not a run, or not started); {"state": "corrupt", "error": why} otherwise."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {"state": "unknown"}
    except OSError as exc:  # unreadable: say so rather than guess a state
        return corrupt(f"status.json cannot be read ({exc.strerror or exc})")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return corrupt("status.json is not UTF-8 text")
    except (ValueError, RecursionError):
        return corrupt("status.json is not valid JSON")
    problem = status_problem(data)
    if problem:
        return corrupt(problem)
    # a null count reads as absent: readers give their default (st.get("step", 0)), not None
    return {k: v for k, v in data.items() if not (v is None and k in _INT_FIELDS)}


def failure_from_log(run_dir: Path, tail_bytes: int = 65536) -> str | None:
    """The cause the worker printed with FAILURE_MARK in train.log (the last one), if any."""
    try:
        with open(Path(run_dir) / "train.log", "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    text = text.rsplit(START_MARK + "\n", 1)[-1]  # an earlier attempt's cause is not this one's
    causes = [line[len(FAILURE_MARK):] for line in text.splitlines() if line.startswith(FAILURE_MARK)]
    return causes[-1].replace("\\n", "\n") if causes else None


def mark_failure(reason: str, stream) -> None:
    """Print the cause on one marked line (newlines escaped) for failure_from_log."""
    try:
        print(FAILURE_MARK + reason.replace("\n", "\\n"), file=stream, flush=True)
    except (OSError, ValueError):  # stderr gone as well: nothing left to tell
        pass


# -- folders written whole or not at all --------------------------------------------

WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
WEIGHT_INDEX = "model.safetensors.index.json"


def has_weights(folder: Path) -> bool:
    """Whether a model folder holds its weights: a safetensors file, or an index whose
    shards are all there. A folder with only config.json (a save that died) has none."""
    folder = Path(folder)
    try:
        if any((folder / name).is_file() for name in WEIGHT_FILES):
            return True
        index = folder / WEIGHT_INDEX
        if not index.is_file():
            return False
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        return bool(shards) and all((folder / s).is_file() for s in shards)
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def atomic_folder(target: Path):
    """Yield a temporary sibling folder to write into; on success it replaces `target`
    (an older one is moved aside first, then removed), on failure it is deleted. The
    target therefore either is the old complete folder, the new complete one, or absent."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back
        raise
