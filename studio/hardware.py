"""The machine the studio runs on and the ones it plans for: the GPUs nvidia-smi reports
(no torch import: the UI asks at start-up), this machine's RAM, and the planning tables
(common GPUs with their memory, peak dense bf16/fp16 tensor TFLOPS by GPU name)."""
from __future__ import annotations

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
