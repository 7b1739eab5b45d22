"""The worker keeps freed memory in its heap (studio.worker.keep_freed_memory): a training
step's temporaries are then reused instead of being page-faulted in again every step."""
from __future__ import annotations

import subprocess
import sys

import pytest

# Ten 3 MB temporaries a "step", freed at its end, twenty steps; prints the minor page
# faults the steps after the first one took (the first one faults its pages in anyway).
STEPS = """
import resource, sys
sys.path.insert(0, {root!r})
if {keep}:
    from studio.worker import keep_freed_memory
    assert keep_freed_memory()
def step():
    blocks = [bytearray(3 << 20) for _ in range(10)]  # zero-filled: every page touched
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_after_first_step(keep: bool) -> int:
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", STEPS.format(root=root, keep=keep)], capture_output=True,
                         text=True, check=True, timeout=60)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_heap_stops_refaulting_each_steps_temporaries():
    default, kept = faults_after_first_step(False), faults_after_first_step(True)
    pages_per_step = 10 * (3 << 20) // 4096
    # measured: default ~150,000 (every step re-faults its 7,680 pages), kept ~10
    assert default > 10 * pages_per_step, default
    assert kept < pages_per_step, kept
