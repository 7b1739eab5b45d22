"""Code reward: the reply's Python passes the row's unit tests (the "answer" column,
e.g. `assert add(2, 3) == 5`), run in a separate process.

What the sandbox guarantees: a new process (no shell, its own process group, killed as
a group), `python -I` (no user site, no PYTHON* variables, no cwd on the path), an empty
environment, a fresh temporary working folder, rlimits on CPU seconds, address space
(memory), file size and open files, and a wall-clock timeout. The network: where
`unshare -rn` works (unprivileged user namespaces) the process has no network device at
all; elsewhere an audit hook refuses sockets, new processes and ctypes, which stops
honest mistakes and casual misuse but is not a security boundary (CPython's audit hooks
are not). So it is refused in hosted mode: a person's own machine only.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from studio.rewards.text import code_in, completion_text, references
from studio.rewards.user import refuse_when_hosted

RUNNER = Path(__file__).with_name("sandbox_runner.py")
MAX_OUTPUT = 2000


@functools.lru_cache(maxsize=1)
def network_namespace() -> list[str]:
    """["unshare", "-rn", "--"] when this machine lets an unprivileged process drop its
    network, else []: then the audit hook is the only network block."""
    tool = shutil.which("unshare")
    if not tool:
        return []
    try:
        ok = subprocess.run([tool, "-rn", "--", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return [tool, "-rn", "--"] if ok else []


def _limits(cpu_s: int, memory_mb: int):
    def apply():  # runs in the child before exec
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (10 << 20, 10 << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    return apply


def run_tests(code: str, tests: str, timeout: float = 5.0, memory_mb: int = 512) -> tuple[bool, str]:
    """(passed, why) for `code` followed by `tests` in the sandbox."""
    refuse_when_hosted("code_tests")
    with tempfile.TemporaryDirectory(prefix="studio-sandbox-") as tmp:
        (Path(tmp) / "solution.py").write_text(code)
        (Path(tmp) / "tests.py").write_text(tests)
        argv = [*network_namespace(), sys.executable, "-I", str(RUNNER), "solution.py", "tests.py"]
        proc = subprocess.Popen(argv, cwd=tmp, env={}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_limits(max(1, int(timeout) + 1), memory_mb))
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return False, f"timed out after {timeout:g} s"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode == 0:
            return True, "passed"
        lines = err.decode(errors="replace").strip().splitlines()
        return False, (lines[-1] if lines else f"exit status {proc.returncode}")[:MAX_OUTPUT]


def code_tests(completions: list, answer: list | None = None, timeout: float = 5.0, memory_mb: int = 512,
               **kw) -> list[float]:
    """1.0 when the reply's code (its first ``` block, else all of it) passes the row's
    unit tests (the answer column) within timeout seconds and memory_mb, else 0.0."""
    out = []
    for c, tests in zip(completions, references("code_tests", completions, answer)):
        passed = bool(tests) and run_tests(code_in(completion_text(c)), tests, timeout, memory_mb)[0]
        out.append(1.0 if passed else 0.0)
    return out
