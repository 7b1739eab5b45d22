"""Shared helpers for the bench scripts: timed subprocesses, medians, tables, JSON.

Nothing here imports torch or the studio, so a bench script's parent process stays
light and its children are timed from a cold start.

Timings on a shared machine are noisy: every script interleaves its A/B runs
(A, B, A, B, ...) so that a burst of load hits both sides, and reports medians.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable


def bench_env(threads: int | None = 1, **extra: str) -> dict:
    """The environment every timed child gets (both sides of a comparison get the same).

    threads: intra-op threads for torch (OMP/MKL). On a loaded machine OpenMP threads that
    spin-wait for each other are preempted and a step can take 20x longer with 2 threads
    than with 1, so the default is 1; pass None to keep the library default."""
    env = dict(os.environ)
    env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1",
               TRANSFORMERS_VERBOSITY="error", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(extra)
    return env


class RunFailed(RuntimeError):
    pass


def use_threads(threads: int) -> None:
    """This process's torch threads (0: the library default), set before torch starts its
    thread pool; the in-process latency benches share it. torch is imported only here."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if threads:
        torch.set_num_threads(threads)


def timed_run(cmd: list[str], env: dict | None = None, cwd: str | Path | None = None,
              timeout: float = 900, log: Path | None = None, with_cpu: bool = False):
    """Run cmd to completion; return its whole-process wall time in seconds, or with_cpu:
    (wall, CPU seconds user+sys of it and the children it waited for). CPU time barely
    moves with the machine's load, so it shows a real difference where wall time is noise.
    Output goes to `log` (or is discarded); a non-zero exit raises RunFailed with the tail."""
    import resource

    out = open(log, "wb") if log else subprocess.DEVNULL
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd or REPO, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    finally:
        if log:
            out.close()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = Path(log).read_text(errors="replace")[-3000:] if log else ""
        raise RunFailed(f"{' '.join(map(str, cmd[:6]))} ... exited {proc.returncode}\n{tail}")
    if with_cpu:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list]) -> str:
    """A plain-text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[fmt(c) if not isinstance(c, str) else c for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def versions(*packages: str) -> dict:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    """What the figures were measured on (load average included: it explains the noise)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return {"cpus": cpus, "load_avg_1m": round(os.getloadavg()[0], 1), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_json(name: str, data: dict) -> Path:
    """bench/results/<name>.json, small and stable (the latest run is committed)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=1, default=str) + "\n")
    return path


def interleaved(sides: dict, repeats: int, on_result=None) -> dict:
    """Run each side's callable once per round, rounds in turn (A, B, A, B, ...), so that
    load bursts on a shared machine land on both. Returns {side: [result, ...]}."""
    results = {name: [] for name in sides}
    for i in range(repeats):
        for name, fn in sides.items():
            res = fn(i)
            results[name].append(res)
            if on_result:
                on_result(name, i, res)
    return results


def save_tiny_model(folder: Path, recipe: str = "quickstart", seed: int = 42, **shape) -> Path:
    """The recipe's scratch model (seeded weights) and tokenizer saved as an ordinary model
    folder (safetensors), so the studio, a bare script and LlamaFactory load the same one.
    `shape` overrides model fields (d_model=512, n_layers=8: a model whose compute, not
    Python overhead, sets the speed). Imports torch: call it in the parent, before timing."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    from transformers import set_seed

    from studio.model import build_or_load, load_tokenizer
    from studio.presets import load_run

    spec = load_run(recipe)
    for key, value in shape.items():
        setattr(spec.model, key, value)
    tokenizer = load_tokenizer(spec.model)
    set_seed(seed)
    model = build_or_load(spec.model, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
