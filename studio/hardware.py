"""The machine the studio runs on and the ones it plans for: the GPUs nvidia-smi reports
(no torch import: the UI asks at start-up), this machine's RAM, and the planning tables
(common GPUs with their memory, peak dense bf16/fp16 tensor TFLOPS by GPU name)."""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess

from studio.units import MIB

DEFAULT_GPU = "24 GB: RTX 4090"  # planning default where no GPU is detected
# name: (memory GB, peak dense bf16/fp16 tensor TFLOPS from the vendors' data sheets)
GPUS = {
    "8 GB: RTX 3070": (8, 40.0),
    "16 GB: T4": (16, 65.0),
    "24 GB: RTX 4090": (24, 165.0),
    "40 GB: A100 40GB": (40, 312.0),
    "80 GB: A100 80GB": (80, 312.0),
    "80 GB: H100 SXM": (80, 989.0),
    "141 GB: H200": (141, 989.0),
}
# nvidia-smi name fragments, most specific first ("A100" before "A10")
PEAK_TFLOPS = [("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A10", 125.0),
               ("L4", 121.0), ("4090", 165.0), ("3090", 71.0), ("3070", 40.0), ("V100", 125.0), ("T4", 65.0)]


def gpus() -> list[tuple[str, int]]:
    """(name, bytes) of each GPU nvidia-smi reports; [] on a machine without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=memory.total,name", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        rows = [line.split(",", 1) for line in out.strip().splitlines() if line.strip()]
        return [(name.strip(), int(float(mib)) * MIB) for mib, name in rows]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def ram_bytes() -> int | None:
    """This machine's physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def detect_device_memory() -> tuple[int | None, str]:
    """(bytes, what) of the first GPU, else this machine's RAM: the memory a run started
    here would train in."""
    found = gpus()
    if found:
        return found[0][1], found[0][0]
    ram = ram_bytes()
    return (ram, "CPU RAM, no GPU found") if ram else (None, "unknown")


def peak_tflops(gpu_name: str, unknown: float = 100.0) -> float:
    """Dense bf16/fp16 tensor TFLOPS of a GPU named by nvidia-smi (a guess when unknown;
    the field stays editable)."""
    return next((t for fragment, t in PEAK_TFLOPS if fragment in gpu_name.upper()), unknown)


def detected_gpu() -> tuple[str, float, float] | None:
    """(label, GB, TFLOPS) of the first GPU, or None on a machine without one."""
    found = gpus()
    if not found:
        return None
    name, size = found[0]
    return f"Detected: {name}", round(size / MIB / 1024, 1), peak_tflops(name)


# -- what this machine's GPU can run (the speed options of #26) ------------------------
# Asked of nvidia-smi and of the installed packages, never of torch: spec validation calls
# these from the UI process. Ampere (compute capability 8.0) is where bf16, TF32 and
# FlashAttention 2 start.
AMPERE = (8, 0)


@functools.lru_cache(maxsize=1)
def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of the first GPU, or None without one (cached: one probe)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        major, minor = out.strip().splitlines()[0].strip().split(".")
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def supports_bf16() -> bool:
    cap = cuda_capability()
    return cap is not None and cap >= AMPERE


def supports_tf32() -> bool:
    return supports_bf16()  # the same generation brought both


def supports_flash_attention() -> bool:
    cap = cuda_capability()
    return cap is not None and cap >= AMPERE and has_package("flash_attn")


def speed_refusals(train_spec) -> list[tuple[str, str]]:
    """(field, message) for each speed option this machine cannot run, with the fix."""
    out = []
    cap = cuda_capability()
    t = train_spec
    if t.use_liger_kernel:
        if cap is None:
            out.append(("train.use_liger_kernel", "Liger kernels are Triton code for CUDA GPUs and this machine "
                        "has none; set use_liger_kernel: false (it changes speed and memory, not results)"))
        elif not (has_package("liger_kernel") and has_package("triton")):
            out.append(("train.use_liger_kernel", "liger-kernel is not installed; `pip install liger-kernel`, "
                        "or set use_liger_kernel: false"))
    if t.attn_implementation == "flash_attention_2":
        if cap is None or cap < AMPERE:
            where = "this machine has no CUDA GPU" if cap is None else f"this GPU is sm_{cap[0]}{cap[1]}"
            out.append(("train.attn_implementation", f"flash_attention_2 needs an Ampere or newer GPU and {where}; "
                        "use sdpa (auto), which picks a flash kernel itself where it can"))
        elif not has_package("flash_attn"):
            out.append(("train.attn_implementation", "flash-attn is not installed; `pip install flash-attn`, "
                        "or use sdpa (auto)"))
    if t.attn_implementation == "kernels":
        if cap is None:
            out.append(("train.attn_implementation", "'kernels' loads CUDA attention kernels and this machine has "
                        "no CUDA GPU; use sdpa (auto)"))
        elif not has_package("kernels"):
            out.append(("train.attn_implementation", "the kernels package is not installed; `pip install kernels`, "
                        "or use sdpa (auto)"))
    return out
