"""What it takes to launch a run on this machine: the command line of a multi-process
launch, and whether the spec's memory need fits the device.

Imports neither torch nor gradio (jobs and the UI call it before anything starts).

Multi-process runs go through `accelerate launch --multi_gpu`: on a GPU machine that is
DDP over NCCL, on a CPU-only machine accelerate runs the same command as MULTI_CPU over
gloo (`--cpu` would not: it is a single-process launcher). DeepSpeed and FSDP are
accelerate's own flags, so the trainer picks them up from the environment it sets.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

from studio import hardware
from studio.estimate import count_parameters, estimate_memory
from studio.spec import RunSpec
from studio.units import MIB, gib

# train.distributed -> accelerate launch flags
STRATEGY_FLAGS = {
    "ddp": [],
    "zero2": ["--use_deepspeed", "--zero_stage", "2"],
    "zero3": ["--use_deepspeed", "--zero_stage", "3"],
    "fsdp": ["--use_fsdp", "--fsdp_sharding_strategy", "FULL_SHARD", "--fsdp_version", "2"],
}
# set in the launched group so the worker ranks do not wait for a lock their launcher holds
LOCK_HELD_ENV = "STUDIO_DEVICE_LOCK_HELD"


def is_multi_process(spec: RunSpec) -> bool:
    return spec.train.num_processes * spec.train.nnodes > 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(spec: RunSpec, run_dir: str | Path) -> list[str]:
    """`accelerate launch ... -m studio.worker RUN_DIR` for the spec's process layout.

    train.num_processes counts processes per node (one per GPU), as torchrun's
    nproc_per_node does; accelerate wants the total over all nodes."""
    t = spec.train
    port = t.master_port or free_port()  # a fixed 29500 would collide with any other group
    # --multi_gpu is DDP's flag; accelerate refuses it beside --use_fsdp / --use_deepspeed
    mode = [] if STRATEGY_FLAGS[t.distributed] else ["--multi_gpu"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *mode,
           "--num_processes", str(t.num_processes * t.nnodes), "--num_machines", str(t.nnodes),
           "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no"]
    if t.nnodes > 1:
        cmd += ["--machine_rank", str(t.node_rank), "--main_process_ip", t.master_addr]
    cmd += STRATEGY_FLAGS[t.distributed]
    return cmd + ["-m", "studio.worker", str(run_dir)]


def launch_problems(spec: RunSpec) -> list[str]:
    """Reasons this machine cannot launch the spec's process layout (empty when it can)."""
    t = spec.train
    out = []
    if not is_multi_process(spec):
        return out
    if importlib.util.find_spec("accelerate") is None:
        out.append("train.num_processes: more than one process needs accelerate; install it or use 1")
    if t.distributed in ("zero2", "zero3") and importlib.util.find_spec("deepspeed") is None:
        out.append(f"train.distributed: {t.distributed} needs DeepSpeed, which is not installed here; "
                   "`pip install deepspeed`, or choose ddp or fsdp")
    gpus = gpu_count()
    if t.distributed == "fsdp" and not gpus:  # measured (#26): accelerate 1.15 on CPU wraps in DDP instead
        out.append("train.distributed: fsdp needs GPUs; on a CPU-only machine accelerate runs it as plain DDP "
                   "over gloo (no sharding); choose ddp")
    if gpus and t.num_processes > gpus:
        out.append(f"train.num_processes: this machine has {gpus} GPU(s); use at most {gpus} processes per node")
    return out


# -- device memory and the fit check ----------------------------------------------


def gpu_memory() -> list[int]:
    """Bytes of each GPU, from nvidia-smi (no torch import here); [] without one."""
    return [size for _, size in hardware.gpus()]


def gpu_count() -> int:
    return len(gpu_memory())


def memory_limit_bytes() -> int | None:
    """The cap the worker puts on itself (STUDIO_MEMORY_LIMIT_MB), if any."""
    raw = os.environ.get("STUDIO_MEMORY_LIMIT_MB", "").strip()
    return int(float(raw) * MIB) if raw else None


def device_memory() -> tuple[str, int]:
    """(device name, bytes one process may use on it)."""
    gpus = gpu_memory()
    if gpus:
        return "cuda", min(gpus)
    total = hardware.ram_bytes()
    limit = memory_limit_bytes()
    return "cpu", min(total, limit) if limit else total


def estimated_bytes(spec: RunSpec) -> tuple[int | None, str]:
    """(bytes the run needs, how it was found). The Model tab's estimator when there is
    one; else a floor nobody can train under: the weights, plus their gradients and
    AdamW states when every weight trains."""
    try:
        return estimate_memory(spec)["total"], "estimate"
    except Exception:  # noqa: BLE001 - e.g. a config it cannot read: the floor below, or no check
        pass
    try:
        params = int(count_parameters(spec.model)["total"])
    except Exception:  # noqa: BLE001 - e.g. a hub id whose config is not cached: no check
        return None, "unknown"
    per_param = {"full": 16, "freeze": 4, "qlora": 0.5}.get(spec.method.regime, 4)
    return int(params * per_param), "lower bound"


def fit_problems(spec: RunSpec, device: tuple[str, int] | None = None) -> list[str]:
    """Reasons the run clearly cannot fit the device, with settings that would."""
    name, capacity = device or device_memory()
    need, how = estimated_bytes(spec)
    if need is None or need <= capacity:
        return []
    from studio.oom import candidates

    lines = [f"memory: this run needs about {gib(need)} ({how}) but the {name} has {gib(capacity)}."]
    fits = []
    for text, variant in candidates(spec):
        v_need, _ = estimated_bytes(variant)
        if v_need is not None:
            fits.append(f"{text} -> about {gib(v_need)}" + (" (fits)" if v_need <= capacity else ""))
    if fits:
        lines.append("Settings that need less: " + "; ".join(fits))
    return lines


# -- the same run from the command line ---------------------------------------------


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def _cli_value(value) -> str:
    import json

    import yaml

    if isinstance(value, str) and value and yaml.safe_load(value) == value:
        return value  # plain text that reads back as itself needs no quotes
    return json.dumps(value)  # JSON is YAML: lists of sources, numbers, booleans, ""


def cli_overrides(spec: RunSpec, base: RunSpec) -> list[str]:
    """`key.path=value` for every field where spec differs from base (the CLI's --set)."""
    mine, theirs = _flat(spec.to_dict()), _flat(base.to_dict())
    return [f"{k}={_cli_value(v)}" for k, v in mine.items() if theirs.get(k) != v]


def cli_command(spec: RunSpec, base_name: str = "quickstart") -> str:
    """`python -m studio train <recipe> --set ...` that rebuilds exactly this spec."""
    import shlex

    from studio.presets import load_run

    sets = cli_overrides(spec, load_run(base_name))
    return " ".join(["python -m studio train", base_name] + [f"--set {shlex.quote(s)}" for s in sets])
