"""The training process: `python -m studio.worker RUN_DIR`, the only entry point.

It reads RUN_DIR/spec.yaml, waits for the device lock, runs the method from the
registry and keeps status.json and metrics.jsonl current. stdout/stderr go to
train.log (the launcher redirects them). It never talks to the UI except through files.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

from studio import jobs, runfiles, skip_imports
from studio.spec import RunSpec


class Stopped(Exception):
    pass


def _on_sigterm(signum, frame):
    # Raised inside the training loop; the handler below records "stopped".
    raise Stopped()


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def apply_memory_limit() -> int | None:
    """Cap this process's address space at STUDIO_MEMORY_LIMIT_MB (for a shared machine,
    and to test the out-of-memory path): past it, allocations fail inside this process
    instead of the kernel's OOM killer taking it, or a neighbour, down without a word."""
    from studio.launch import memory_limit_bytes

    limit = memory_limit_bytes()
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


# glibc's defaults hand every freed block above ~128 KB back to the kernel (adapting the
# limit only as it sees frees), so a CPU training step's large temporaries (activations,
# the LM head's logits tiles) are mapped, page-faulted in and unmapped again step after
# step. Keeping up to 32 MB blocks in the heap and 64 MB free at its top halves the page
# faults of the quickstart run (measured 0.50M -> 0.28M) for a few MB more resident memory.
MALLOC_MMAP_THRESHOLD = 32 << 20
MALLOC_TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Tell glibc malloc to reuse freed memory rather than return it to the kernel
    (mallopt; no-op where libc is not glibc). Called first, before torch allocates."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD))


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
    """Block until no other run holds the device, first come first served. Returns the
    open lock file (kept open for the life of the process; the kernel releases it on any
    exit). flock alone does not keep order: two workers started together race for it, so
    a worker that wins while an earlier-launched run still waits lets go and waits too."""
    lock = open(run_dir.parent / jobs.LOCK_FILE, "a+")
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                print("Waiting for the device: another run is training.", flush=True)
                told = True
            fcntl.flock(lock, fcntl.LOCK_EX)
        if jobs.queue_position(run_dir) == 1:
            return lock
        fcntl.flock(lock, fcntl.LOCK_UN)  # an earlier run is waiting: its turn first
        time.sleep(0.2)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:
        return True
    # a failed CPU allocation surfaces as a RuntimeError from c10's allocator
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "cannot allocate memory", "not enough memory", "out of memory"))


def peak_memory_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def explain(exc: BaseException, spec: RunSpec, device: str) -> str:
    """The error in plain words, with the fix where we know it."""
    name = type(exc).__name__
    if is_out_of_memory(exc):
        from studio.launch import device_memory
        from studio.oom import advice

        return advice(spec, peak_memory_bytes(device), device, device_memory()[1])
    if name in ("DataError", "SpecError", "ModelError", "Diverged"):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        return (f"The run could not write {exc.filename or 'its files'}: {exc.strerror}. Make the run "
                "directory writable (or free disk space), then resume the run.")
    if isinstance(exc, FileNotFoundError):
        return f"A file was not found: {exc.filename or exc}. Check the paths in the spec."
    if isinstance(exc, ImportError):
        return f"A package is missing: {exc}. Install it, or choose another option."
    return f"{name}: {exc}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m studio.worker RUN_DIR", file=sys.stderr)
        return 2
    from studio.launch import LOCK_HELD_ENV, is_multi_process, launch_command

    run_dir = Path(argv[0]).resolve()
    spec = RunSpec.load(run_dir / "spec.yaml")
    if spec.train.federation.enabled or spec.train.decentralized.enabled:
        from studio.scaleout.env import has_engines, python

        if not has_engines():  # flwr/hivemind live in .venv-scaleout (#24): same pid and group
            os.execv(python(), [python(), "-m", "studio.worker", str(run_dir)])
    skipped = skip_imports.for_run(spec)  # before anything imports peft/transformers
    keep_freed_memory()
    apply_memory_limit()
    launched = "LOCAL_RANK" in os.environ  # a rank of an accelerate/torchrun group
    if rank() != 0:  # extra ranks of a multi-process launch: train, write nothing
        code = run_method(spec, run_dir, lead=False)
        if spec.train.node_rank > 0 and os.environ.get("LOCAL_RANK") == "0":
            # another node's first rank ends that node's own run dir, which has no other
            # writer (the world's rank 0 writes metrics and final/ on the main node)
            finish(run_dir, state="completed" if code == 0 else "failed", ended=time.time(),
                   **({} if code == 0 else {"error": "A process of this node failed: see train.log."}))
        return code
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.environ.get(LOCK_HELD_ENV) != "1":
        jobs.write_status(run_dir, state="queued", pid=os.getpid(), pgid=os.getpgrp())
        try:
            lock = acquire_device_lock(run_dir)
        except Stopped:  # stopped while still waiting in the queue
            jobs.write_status(run_dir, state="stopped", ended=time.time())
            return 0
        if is_multi_process(spec) and not launched:
            # The device is ours: become the launcher of the whole group (same pid and
            # process group, so stop() ends every rank). The lock fd stays open across
            # exec, so the lock is held once, for the group, until the launcher exits.
            os.set_inheritable(lock.fileno(), True)
            cmd = launch_command(spec, run_dir)
            jobs.write_status(run_dir, state="running", started=time.time(), error=None,
                              num_processes=spec.train.num_processes * spec.train.nnodes)
            print("Launching:", " ".join(cmd), flush=True)
            os.environ[LOCK_HELD_ENV] = "1"
            os.execv(cmd[0], cmd)
        jobs.write_status(run_dir, state="running", started=time.time(), pid=os.getpid(), error=None)
    else:  # rank 0 of a group whose launcher holds the lock and owns the pid in status
        jobs.write_status(run_dir, state="running", error=None)
    print(f"Run {run_dir.name}: {spec.method.name}/{spec.method.regime}", flush=True)
    if skipped:
        print(f"Not loading {', '.join(skipped)}: this run does not use them", flush=True)
    return run_method(spec, run_dir, lead=True)


def run_method(spec: RunSpec, run_dir: Path, lead: bool) -> int:
    # Over 60 lines on purpose: the worker's one sequence (load, data, train, save, status) reads top to bottom.
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
                jobs.write_status(run_dir, step=step, total=total, epoch=epoch,
                                  peak_memory_bytes=peak_memory_bytes(device))

        def should_stop():
            return stop_request(run_dir)

        if world_size() > 1:
            # every rank must stop at the same step, or the others hang in the next
            # all-reduce: rank 0 reads the request and broadcasts it
            callbacks = ([make_callback(writer, progress, None)] if lead else []) + [stop_sync_callback(run_dir)]
        else:
            callbacks = [make_callback(writer, progress, should_stop)]
        callbacks.append(divergence_guard(spec, run_dir, writer))
        if lead and spec.train.eval_tasks:  # a held-out task's score beside eval loss (studio.evaluate)
            from studio.evaluate.callback import eval_task_callback

            callbacks.append(eval_task_callback(spec, writer))
        ctx = TrainContext(
            spec=spec, run_dir=run_dir, device=device, precision=precision, callbacks=callbacks,
            log=(writer.write if writer else (lambda r: None)), progress=progress,
            should_stop=lambda: stop_request(run_dir) is not None,
            extras={"on_data": (lambda bundle: report_data(run_dir, bundle)) if lead else (lambda bundle: None)},
        )
        if spec.train.federation.enabled or spec.train.decentralized.enabled:
            from studio import scaleout  # Flower / hivemind (#24)

            (scaleout.run_federated if spec.train.federation.enabled else scaleout.run_decentralized)(ctx)
        else:
            method(spec.method.name).load().train(ctx)
        if lead:
            request = stop_request(run_dir)
            if not finish(run_dir, state="stopped" if request else "completed", ended=time.time(),
                          peak_memory_bytes=peak_memory_bytes(device)):
                return 1
            print("Stopped." if request else f"Done. Final model in {run_dir / 'final'}", flush=True)
        return 0
    except (Stopped, KeyboardInterrupt):
        if lead:
            if not finish(run_dir, state="stopped", ended=time.time()):
                return 1
            print("Stopped by request.", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        if lead:
            finish(run_dir, state="failed", ended=time.time(), error=explain(exc, spec, device),
                   traceback=tb.strip().splitlines()[-12:])
        return 1


def finish(run_dir: Path, **fields) -> bool:
    """The run's last status. Where status.json cannot be written (the run dir turned
    read-only, the disk filled), the cause goes to train.log on a marked line instead
    (stderr is an fd opened before the run, still writable), where jobs.status() finds it
    when it sees this process gone; the worker then exits non-zero. Never raises."""
    try:
        jobs.write_status(run_dir, **fields)
        return fields.get("state") != "failed"
    except OSError as exc:
        what = fields.get("error") or f"the run ended {fields.get('state')}"
        runfiles.mark_failure(f"{what} (status.json could not be written: {exc.strerror or exc})", sys.stderr)
        return False


def divergence_guard(spec: RunSpec, run_dir: Path, writer):
    """The callback that fails (or rolls back) a run whose loss or gradients went
    non-finite (studio.divergence); on every rank, as the logged values are the same."""
    from studio.divergence import make_guard

    return make_guard(spec.train, log=writer.write if writer else (lambda record: None),
                      last_checkpoint=lambda: jobs.latest_checkpoint(run_dir))


def report_data(run_dir: Path, bundle) -> None:
    """Rows left out as bad while loading, counted by the data layer: in train.log and
    status.json ("dropped 10 of 210 rows: malformed JSON (10)"), so a run that silently
    trained on part of its data says so."""
    text = bundle.dropped_text()
    print(f"Data: {text}", flush=True)
    d = bundle.dropped()
    jobs.write_status(run_dir, data_dropped=text, rows_read=d["rows"], rows_dropped=d["dropped"],
                      dropped_reasons=d["reasons"])


def stop_sync_callback(run_dir: Path):
    import torch
    import torch.distributed as dist
    from transformers import TrainerCallback

    codes = {None: 0, "now": 1, "save": 2}

    class StopSync(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            flag = torch.tensor([codes[stop_request(run_dir)] if rank() == 0 else 0], device=args.device)
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(flag, src=0)
            if flag.item():
                control.should_training_stop = True
                control.should_save = flag.item() == 2

    return StopSync()


def run(argv: list[str]) -> int:
    """main, with the last word on a failure it could not put in status.json (a run
    directory that cannot be written before training starts)."""
    try:
        return main(argv)
    except OSError as exc:
        traceback.print_exc()
        runfiles.mark_failure(f"The worker could not use its run directory: {exc}", sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
