"""The training process: `python -m studio.worker RUN_DIR`, the only entry point.

It reads RUN_DIR/spec.yaml, waits for the device lock, runs the method from the
registry and keeps status.json and metrics.jsonl current. stdout/stderr go to
train.log (the launcher redirects them). It never talks to the UI except through files.
"""
from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

from studio import jobs
from studio.spec import RunSpec


class Stopped(Exception):
    pass


def _on_sigterm(signum, frame):
    # Raised inside the training loop; the handler below records "stopped".
    raise Stopped()


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def resolve_device(spec: RunSpec) -> tuple[str, str]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = spec.train.precision
    if precision == "auto":
        # On CPU, bf16 only pays for larger models (see NOTES): keep fp32 by default.
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    elif precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision: this GPU has no bf16; choose fp16 or auto")
    elif precision == "fp16" and device == "cpu":
        raise ValueError("train.precision: fp16 training needs a GPU; choose fp32, bf16 or auto")
    return device, precision


def stop_request(run_dir: Path) -> str | None:
    path = run_dir / jobs.STOP_REQUEST
    if not path.exists():
        return None
    try:
        return "save" if json.loads(path.read_text()).get("save") else "now"
    except (json.JSONDecodeError, OSError):
        return "now"


def acquire_device_lock(run_dir: Path):
    """Block until no other run holds the device. Returns the open lock file (kept
    open for the life of the process; the kernel releases it on any exit)."""
    lock = open(run_dir.parent / jobs.LOCK_FILE, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("Waiting for the device: another run is training.", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def peak_memory_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def explain(exc: BaseException, spec: RunSpec, device: str) -> str:
    """The error in plain words, with the fix where we know it."""
    name = type(exc).__name__
    if "OutOfMemory" in name or isinstance(exc, MemoryError):
        from studio.oom import advice

        return advice(spec, peak_memory_bytes(device), device)
    if name in ("DataError", "SpecError", "ModelError"):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"A file was not found: {exc.filename or exc}. Check the paths in the spec."
    if isinstance(exc, ImportError):
        return f"A package is missing: {exc}. Install it, or choose another option."
    return f"{name}: {exc}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m studio.worker RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    spec = RunSpec.load(run_dir / "spec.yaml")
    if rank() != 0:  # extra ranks of a multi-process launch: train, write nothing
        return run_method(spec, run_dir, lead=False)
    signal.signal(signal.SIGTERM, _on_sigterm)
    jobs.write_status(run_dir, state="queued", pid=os.getpid(), pgid=os.getpgrp())
    lock = acquire_device_lock(run_dir)  # noqa: F841 (held until exit)
    jobs.write_status(run_dir, state="running", started=time.time(), pid=os.getpid(), error=None)
    print(f"Run {run_dir.name}: {spec.method.name}/{spec.method.regime}", flush=True)
    return run_method(spec, run_dir, lead=True)


def run_method(spec: RunSpec, run_dir: Path, lead: bool) -> int:
    from studio.methods import method
    from studio.methods.context import TrainContext
    from studio.metrics import MetricsWriter, make_callback

    device = "cpu"
    try:
        device, precision = resolve_device(spec)
        writer = MetricsWriter(run_dir) if lead else None
        last_status = [0.0]

        def progress(step: int, total: int, epoch: float | None = None) -> None:
            now = time.time()
            if lead and (now - last_status[0] > 0.5 or step >= total):
                last_status[0] = now
                jobs.write_status(run_dir, step=step, total=total, epoch=epoch)

        def should_stop():
            return stop_request(run_dir)

        callbacks = [make_callback(writer, progress, should_stop)] if lead else []
        ctx = TrainContext(
            spec=spec, run_dir=run_dir, device=device, precision=precision, callbacks=callbacks,
            log=(writer.write if writer else (lambda r: None)), progress=progress,
            should_stop=lambda: stop_request(run_dir) is not None,
        )
        method(spec.method.name).load().train(ctx)
        if lead:
            request = stop_request(run_dir)
            jobs.write_status(run_dir, state="stopped" if request else "completed", ended=time.time(),
                              peak_memory_bytes=peak_memory_bytes(device))
            print("Stopped." if request else f"Done. Final model in {run_dir / 'final'}", flush=True)
        return 0
    except (Stopped, KeyboardInterrupt):
        if lead:
            jobs.write_status(run_dir, state="stopped", ended=time.time())
            print("Stopped by request.", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        if lead:
            jobs.write_status(run_dir, state="failed", ended=time.time(), error=explain(exc, spec, device),
                              traceback=tb.strip().splitlines()[-12:])
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
