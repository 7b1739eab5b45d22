"""What the server lets a client turn on, and where files may be read from.

Two modes. *Local* (the CLI; the app on 127.0.0.1 without auth, demo or share): the
person owns the machine, so any readable path works. *Hosted* (auth, demo, share, a
non-local bind, Spaces): the people using the page do not own the machine, so data is
read only under the data roots, models only under those roots and the runs folder.

Whatever the mode, a client of the app cannot switch on what runs code on the server
(model.trust_remote_code, a Python reward file): the operator allows it with
`--trust-remote-code` when starting the app. The CLI is the operator, so it is not
asked.

The mode travels to the worker through the environment (STUDIO_HOSTED,
STUDIO_TRUST_REMOTE_CODE, STUDIO_DATA_ROOTS, STUDIO_MODEL_ROOTS), so the training
process re-checks what the app checked. No torch or gradio import here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOSTED_ENV = "STUDIO_HOSTED"
REMOTE_CODE_ENV = "STUDIO_TRUST_REMOTE_CODE"
MODEL_ROOTS_ENV = "STUDIO_MODEL_ROOTS"  # operator-chosen model folders (e.g. the demo's)
REMOTE_CODE_FLAG = "--trust-remote-code"
DATA_ROOT_FLAG = "--data-root DIR (or STUDIO_DATA_ROOTS)"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def hosted() -> bool:
    """Whether this process serves (or trains for) people who do not own the machine."""
    return _on(HOSTED_ENV)


def is_hosted_launch(host: str, auth, demo: bool, share: bool, on_spaces: bool) -> bool:
    return bool(auth or demo or share or on_spaces or host not in LOCAL_HOSTS)


def _roots_from(name: str) -> list[Path]:
    return [Path(p.strip()).expanduser().resolve() for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


def data_roots() -> list[Path]:
    from studio.data.sources import allowed_roots

    return allowed_roots()


def model_roots(runs_dir: str | None = None) -> list[Path]:
    """Where a hosted server loads models from: the data roots, the shipped assets, the
    runs folder and the folders the operator named (STUDIO_MODEL_ROOTS)."""
    runs = Path(runs_dir or os.environ.get("STUDIO_RUNS_DIR") or "runs").expanduser().resolve()
    roots = data_roots() + [(REPO_ROOT / "assets").resolve(), runs] + _roots_from(MODEL_ROOTS_ENV)
    return list(dict.fromkeys(roots))  # in order, each once


def inside(path: Path, roots: list[Path]) -> bool:
    try:
        resolved = path.expanduser().resolve()
    except (OSError, ValueError, RuntimeError):  # a null byte, a symlink loop: not a readable path
        return False
    return any(resolved == r or resolved.is_relative_to(r) for r in roots)


def local_folder(value: str) -> Path | None:
    """The local path a model or dataset field names, else None (a hub id): anything
    written as a path, or an existing path as given or relative to the repository (as
    studio.model.load reads it). A path-looking value counts whether or not it exists,
    so a refusal never tells a client which files exist."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if value.startswith((".", "/", "~")) or "\0" in value:
        return Path(value.replace("\0", "")).expanduser()
    for candidate in (Path(value).expanduser(), REPO_ROOT / value):
        try:
            if candidate.exists():
                return candidate
        except OSError:  # a name too long for the file system is not a local path
            return None
    return None


def outside_message(value: str, roots: list[Path], what: str = "data") -> str:
    where = ", ".join(str(r) for r in roots)
    return (f"'{value}' is outside the allowed {what} folders ({where}); this server is hosted, so it reads "
            f"files only there. Upload the file, or start the server with {DATA_ROOT_FLAG} to add its folder")


REMOTE_CODE_FIX = ("this server does not run code from models or files on a client's request; "
                   f"the operator allows it by starting the app with {REMOTE_CODE_FLAG}")


def check_model_folder(folder: Path, field: str = "model.name_or_path") -> None:
    """In hosted mode, refuse a model folder outside the model roots (used by every
    loader, so the worker and the chat tab re-check what the app checked)."""
    if hosted() and not inside(folder, model_roots()):
        raise ValueError(f"{field}: {outside_message(str(folder), model_roots(), 'model')}")


def check_remote_code(wanted: bool, field: str = "model.trust_remote_code") -> None:
    """A hosted worker runs remote code only when the server was started allowing it."""
    if wanted and hosted() and not _on(REMOTE_CODE_ENV):
        raise ValueError(f"{field}: {REMOTE_CODE_FIX}")


# -- what a client of the app may ask for ------------------------------------------------


@dataclass
class Policy:
    hosted: bool = False
    allow_remote_code: bool = False
    runs_dir: str | None = None

    @classmethod
    def of(cls, settings) -> "Policy":
        """The policy of an AppSettings (fields missing on it are the safe defaults)."""
        return cls(hosted=bool(getattr(settings, "hosted", False)) or hosted(),
                   allow_remote_code=bool(getattr(settings, "trust_remote_code", False)),
                   runs_dir=getattr(settings, "runs_dir", None))


def _reward_entries(reward) -> list[str]:
    return [e.strip() for e in str(reward or "").split(",") if e.strip()]


def _runs_code(entry: str) -> bool:
    """A reward entry that names Python to import or run (a file or module:function)."""
    low = entry.lower()
    return low.endswith(".py") or ".py:" in low or low.startswith(("python:", "file:", "module:"))


def _model_fields(spec) -> list[tuple[str, str]]:
    """(field, value) of every spec field that names a model folder."""
    from studio.rewards import MODEL_PREFIX

    out = [("model.tokenizer", spec.model.tokenizer), ("method.reference_model", spec.method.reference_model),
           ("method.teacher", spec.method.teacher), ("train.resume_from", spec.train.resume_from)]
    if spec.model.source == "pretrained":
        out.append(("model.name_or_path", spec.model.name_or_path))
    for entry in _reward_entries(spec.method.reward):
        if entry.startswith(MODEL_PREFIX):
            value = entry[len(MODEL_PREFIX):].strip()
            out.append(("method.reward", value[len("path="):] if value.startswith("path=") else value))
    return out


def refusals(spec, policy: Policy) -> list[tuple[str, str]]:
    """(field, message) for everything in the spec this server does not allow a client."""
    out = []
    if spec.model.trust_remote_code and not policy.allow_remote_code:
        out.append(("model.trust_remote_code", REMOTE_CODE_FIX))
    for entry in _reward_entries(spec.method.reward):
        if _runs_code(entry) and not policy.allow_remote_code:
            out.append(("method.reward", f"'{entry}' would run a Python file; {REMOTE_CODE_FIX}"))
    if not policy.hosted:
        return out
    roots = model_roots(policy.runs_dir)
    for field, value in _model_fields(spec):
        found = local_folder(value)
        if found is not None and not inside(found, roots):
            out.append((field, outside_message(value, roots, "model")))
    droots = data_roots()
    for i, source in enumerate(spec.data.sources):
        found = local_folder(source.path) if source.kind == "hub" else Path(source.path.strip()).expanduser()
        if found is not None and str(source.path).strip() and not inside(Path.cwd() / found, droots):
            out.append((f"data.sources.{i}.path", outside_message(source.path, droots)))
    return out


def problems(spec, settings) -> list:
    """refusals() as studio.spec.Problem, for the UI's validation lists."""
    from studio.spec import Problem

    return [Problem(f, m) for f, m in refusals(spec, Policy.of(settings))]


def enforce(spec, settings) -> None:
    """Raise SpecError (field and fix) on the first refusal: Start calls this before a
    run directory exists."""
    from studio.spec import SpecError

    found = refusals(spec, Policy.of(settings))
    if found:
        raise SpecError(*found[0])
