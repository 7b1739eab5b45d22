"""Your own reward: a Python file with a function in trl's reward signature,
`def reward(completions, answer=None, **kw) -> list[float]`, chosen as
`file:path=my_reward.py` (function=reward by default).

Running it runs the person's code, so it is loaded only in local mode: never when the
studio is hosted (a Space, a server others reach, the demo). Errors name the file and line.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path



def is_hosted() -> bool:
    """True when the studio serves people who do not own the machine: studio.policy's mode
    (the serve entry exports STUDIO_HOSTED for auth, demo, share, a non-local bind; the
    training worker inherits it), or a Space."""
    from studio import policy

    return policy.hosted() or bool(os.environ.get("SPACE_ID"))


def refuse_when_hosted(what: str) -> None:
    if is_hosted():
        raise PermissionError(f"method.reward: {what} runs code and is only available when the studio runs "
                              "locally (not hosted or in demo mode); choose a library reward instead")


def _where(exc: BaseException, path: Path) -> str:
    """'file.py line N: message' from the innermost frame in the user's file."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    at = f" line {line}" if line else ""
    return f"{path.name}{at}: {type(exc).__name__}: {exc}"


_CACHE: dict[tuple, object] = {}


def load_user_reward(path: str, function: str = "reward"):
    """The function `function` of the Python file `path`, loaded once per file version."""
    refuse_when_hosted("a reward file")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"method.reward: no reward file '{path}'; give the path of a .py file")
    key = (str(file.resolve()), file.stat().st_mtime_ns, function)
    if key in _CACHE:
        return _CACHE[key]
    spec = importlib.util.spec_from_file_location(f"studio_user_reward_{abs(hash(key))}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - a SystemExit in the file must not end the studio
        raise ValueError(f"method.reward: the reward file failed to import: {_where(exc, file)}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ValueError(f"method.reward: {file.name} has no function '{function}'; define "
                         f"def {function}(completions, answer=None, **kw) -> list[float]")
    sys.modules.pop(spec.name, None)
    _CACHE[key] = fn
    return fn


def call_user(fn, path: str, completions: list, **kw) -> list[float]:
    """Call a user reward, its errors shown with their line, its result checked."""
    try:
        scores = fn(completions, **kw)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"method.reward: the reward file raised {_where(exc, Path(path).expanduser())}") from None
    if not isinstance(scores, (list, tuple)) or len(scores) != len(completions):
        got = len(scores) if isinstance(scores, (list, tuple)) else type(scores).__name__
        raise ValueError(f"method.reward: {Path(path).name} returned {got} scores for {len(completions)} "
                         "completions; return one float per completion")
    try:
        return [float(s) if s is not None else None for s in scores]
    except (TypeError, ValueError):
        raise ValueError(f"method.reward: {Path(path).name} returned a score that is not a number") from None
