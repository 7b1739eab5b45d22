"""`run:<name>` in model.name_or_path: start from an earlier run of the same runs folder.

A recipe cannot name a run id (it holds the start time), so `run:extract-json-sft`
means the newest finished run of that name (spec `name`, i.e. the recipe's) that holds a
final model; a run id works too (`run:20261203-...-extract-json-sft-ab12`, as in an
evaluation's models). jobs.create_run resolves it before preflight, against the runs
folder the run is created in (--runs-dir, STUDIO_RUNS_DIR, the UI's), and the run's
spec.yaml records the folder it resolved to, so the run says exactly what it started
from. Pure path logic: no torch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from studio.spec import RunSpec

PREFIX = "run:"


def _by_id(ref: str, root: Path) -> Path | None:
    from studio.rundirs import _RUN_ID

    if _RUN_ID.match(ref) and (root / ref / "spec.yaml").is_file():
        return root / ref
    return None


def _named(name: str, root: Path) -> list[Path]:
    """Run dirs of that spec name, newest first (run ids begin with their start time)."""
    found = []
    for run_dir in sorted((p for p in root.iterdir() if (p / "spec.yaml").is_file()), reverse=True):
        try:
            if RunSpec.load(run_dir / "spec.yaml").name == name:
                found.append(run_dir)
        except Exception:  # noqa: BLE001 - a damaged run must not hide the others
            continue
    return found


def find_run(ref: str, runs_dir=None, field: str = "model.name_or_path") -> Path:
    """The final/ folder `run:<ref>` names. JobError (shown as is) when there is none yet,
    saying which run to train first and where it was looked for."""
    from studio.rundirs import TERMINAL, JobError, has_final, runs_root, status

    name = ref[len(PREFIX):].strip() if ref.startswith(PREFIX) else ref.strip()
    if not name:
        raise JobError(f"{field}: write run:<recipe name or run id>, e.g. run:extract-json-sft")
    root = runs_root(runs_dir)
    exact = _by_id(name, root)
    candidates = [exact] if exact else _named(name, root)
    for run_dir in candidates:
        if has_final(run_dir) and status(run_dir).get("state") in TERMINAL:
            return run_dir / "final"
    if candidates:
        states = ", ".join(f"{p.name} ({status(p).get('state')})" for p in candidates[:3])
        raise JobError(f"{field}: '{ref.strip()}' has no finished model yet in {root}: {states}. "
                       f"Let it finish (or train {name} again), then start this run")
    raise JobError(f"{field}: '{ref.strip()}' names no run in {root}: train {name} first "
                   f"(python -m studio train {name}, with the same --runs-dir), or point at a model folder")


def resolve(spec: RunSpec, runs_dir=None) -> RunSpec:
    """The spec with a `run:` model.name_or_path replaced by that run's final/ (absolute);
    any other spec is returned as is."""
    model = spec.model
    if model.source != "pretrained" or not model.name_or_path.strip().startswith(PREFIX):
        return spec
    final = find_run(model.name_or_path.strip(), runs_dir)
    return dataclasses.replace(spec, model=dataclasses.replace(model, name_or_path=str(final.resolve())))
