"""The evaluation process: `python -m studio.evaluate.worker EVAL_DIR`. Waits for the
device (the training queue's lock), runs the evaluation, records how it ended."""
from __future__ import annotations

import fcntl
import signal
import sys
import time
import traceback
from pathlib import Path

from studio import jobs
from studio.evaluate import background


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def device_lock(runs_root: Path):
    """The lock a training worker takes (studio.worker): held for this process's life, so
    an evaluation and a run never share the device; the kernel frees it on any exit."""
    lock = open(runs_root / jobs.LOCK_FILE, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("Waiting for the device: a run or another evaluation holds it.", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def main(argv: list[str]) -> int:
    from studio.evaluate.runner import run_eval

    eval_dir = Path(argv[0]).resolve()
    signal.signal(signal.SIGTERM, _on_sigterm)
    runs_dir = background.read_status(eval_dir).get("runs_dir")
    lock = device_lock(Path(runs_dir) if runs_dir else jobs.runs_root())  # noqa: F841 (held until exit)
    background.write_status(eval_dir, state="running", started=time.time())
    try:
        summary = run_eval(eval_dir, runs_dir)
    except KeyboardInterrupt:
        background.write_status(eval_dir, state="stopped", ended=time.time())
        return 1
    except Exception as exc:  # noqa: BLE001 - told in status.json and the log
        traceback.print_exc()
        background.write_status(eval_dir, state="failed", ended=time.time(), error=str(exc))
        return 1
    background.write_status(eval_dir, state="completed", ended=time.time(),
                            failed_examples=summary.get("failed_examples", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
