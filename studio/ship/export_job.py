"""One export as the Export tab asks for it: a run (or one of its checkpoints) written
as its adapter, its merged model or a GGUF (with the parity check and an Ollama
Modelfile), optionally pushed to a hub repository; the report says where each thing
went and its size on disk.

Everything is written under <runs>/exports/<name>, and sources are named, not given as
paths (run id, or run id/checkpoint-N), so a page can neither read nor write outside the
runs folder. Light at import: torch and the rest load inside studio.export's calls.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from studio import jobs

KINDS = {"adapter": "the adapter only (small; needs its base model to load)",
         "merged": "merged model (adapter folded into its base; loads anywhere transformers does)",
         "gguf": "GGUF for llama.cpp / Ollama / LM Studio (merged first, then converted and checked)"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ExportJobError(ValueError):
    """Refused before any work: names the field and the fix."""


@dataclass
class Request:
    source: str  # run id, or "run id/checkpoint-N"
    name: str  # folder under <runs>/exports
    kind: str = "merged"
    gguf_type: str = "q8_0"
    overwrite: bool = False
    push_to: str = ""  # user/name; empty: no push
    private: bool = True


@dataclass
class Report:
    items: list[dict] = field(default_factory=list)  # what, path, bytes
    parity: dict | None = None
    ollama: str | None = None  # the `ollama create` command
    notes: list[str] = field(default_factory=list)
    pushed: str | None = None


def sources(runs_dir=None) -> list[tuple[str, str]]:
    """(label, value) for every finished run and each complete checkpoint of any run."""
    out = []
    for row in jobs.list_runs(runs_dir):
        run_dir = Path(row["path"])
        if row["has_final"]:
            out.append((f"{row['run_id']} (final)", row["run_id"]))
        for ckpt in reversed(jobs.checkpoints(run_dir)):
            out.append((f"{row['run_id']} · {ckpt.name}", f"{row['run_id']}/{ckpt.name}"))
    return out


def resolve(value: str, runs_dir=None) -> Path:
    """The folder a named source means (a run dir, or one of its checkpoints)."""
    value = (value or "").strip()
    if not value:
        raise ExportJobError("run: choose a finished run (or one of its checkpoints) to export")
    run_id, _, ckpt = value.partition("/")
    try:
        run_dir = jobs.run_path(run_id, runs_dir)
    except jobs.JobError:
        run_dir = None
    if run_dir is None or not (run_dir / "spec.yaml").is_file():
        raise ExportJobError(f"run: '{run_id}' is not a run in this runs folder; pick one from the list")
    if not ckpt:
        if not jobs.has_final(run_dir):
            raise ExportJobError(f"run: '{run_id}' has no final model yet; pick a finished run or a checkpoint")
        return run_dir
    found = {p.name: p for p in jobs.checkpoints(run_dir)}
    if ckpt not in found:
        raise ExportJobError(f"run: '{value}' is not a complete checkpoint of {run_id}; pick one from the list")
    return found[ckpt]


def out_folder(name: str, runs_dir=None) -> Path:
    name = (name or "").strip()
    if not NAME.match(name):
        raise ExportJobError("folder name: letters, digits, '.', '_', '-' (it is written under runs/exports/)")
    return jobs.runs_root(runs_dir) / "exports" / name


def size_of(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def check(req: Request, runs_dir=None, allow_push: bool = True) -> tuple[Path, Path]:
    """Every refusal before any work: (source folder, output folder)."""
    from studio import export
    from studio.ship import gguf

    if req.kind not in KINDS:
        raise ExportJobError(f"format: '{req.kind}' is not one of {', '.join(KINDS)}")
    source, out = resolve(req.source, runs_dir), out_folder(req.name, runs_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not req.overwrite:
        raise ExportJobError(f"folder name: exports/{req.name} already exists; choose a new name or tick 'replace'")
    if req.kind == "gguf":
        try:
            gguf.check_ready(req.gguf_type)
        except gguf.GGUFError as exc:
            raise ExportJobError(f"GGUF type: {exc}") from None
    if req.push_to.strip():
        if not allow_push:
            raise ExportJobError("push to hub: not on this server (a demo or hosted page would push with the "
                                 "server's token); export here, then push with `python -m studio export --push`")
        if not REPO.match(req.push_to.strip()):
            raise ExportJobError(f"push to hub: '{req.push_to}' should look like user/name")
        if not export.hub_token():
            raise ExportJobError("push to hub: no hub token configured; set HF_TOKEN (or run `hf auth login`) "
                                 "where the studio runs, or clear the repository field")
    return source, out


@contextlib.contextmanager
def loadable(source: Path):
    """The source as a folder the studio's loader accepts: a checkpoint also holds the
    trainer's pickles (optimizer.pt, rng_state.pth), which the loader refuses on sight,
    so its safetensors, configs and tokenizer are linked into a temporary sibling."""
    if source.parent.name != "checkpoints":
        yield source
        return
    from fnmatch import fnmatch

    from studio.export import UPLOAD_PATTERNS

    tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=source.parent))
    try:
        for f in source.iterdir():
            if f.is_file() and any(fnmatch(f.name, pat) for pat in UPLOAD_PATTERNS if pat != "*.gguf"):
                try:
                    os.link(f, tmp / f.name)
                except OSError:  # another filesystem, or no hard links: a copy then
                    shutil.copy2(f, tmp / f.name)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(req: Request, runs_dir=None, allow_push: bool = True) -> Report:
    source, out = check(req, runs_dir, allow_push)
    with loadable(source) as folder:
        return _run(req, folder, out, runs_dir)


def _run(req: Request, source: Path, out: Path, runs_dir) -> Report:
    from studio import export
    from studio.ship import gguf

    report = Report()
    try:
        if req.kind == "adapter":
            folder = export.save_adapter(str(source), out, runs_dir, req.overwrite)
            report.items.append({"what": "adapter", "path": str(folder), "bytes": size_of(folder)})
        else:
            folder = export.merge(str(source), out, runs_dir, req.overwrite)
            report.items.append({"what": "merged model", "path": str(folder), "bytes": size_of(folder)})
        if req.kind == "gguf":
            _gguf_step(folder, req.gguf_type, report)
        if req.push_to.strip():
            report.pushed = export.push(folder, req.push_to.strip(), private=bool(req.private))
    except (export.ExportError, gguf.GGUFError) as exc:
        raise ExportJobError(str(exc)) from None
    return report


def _gguf_step(folder: Path, gguf_type: str, report: Report) -> None:
    from studio.ship import gguf

    try:
        shipped = gguf.ship(folder, gguf_type)
    except ValueError as exc:  # the verifier's refusals
        raise ExportJobError(f"GGUF: {exc}") from None
    report.items.append({"what": f"GGUF {gguf_type}", "path": shipped["gguf"], "bytes": shipped["bytes"]})
    report.parity = shipped.get("parity")
    if shipped.get("modelfile"):
        report.items.append({"what": "Ollama Modelfile", "path": shipped["modelfile"],
                             "bytes": size_of(shipped["modelfile"])})
        report.ollama = shipped["ollama"]
    elif shipped.get("modelfile_error"):
        report.notes.append(shipped["modelfile_error"])


def parity_line(p: dict) -> str:
    diff = p.get("first_difference")
    where = ("no differing token" if not diff else
             f"first differing token: prompt {diff['prompt'] + 1}, position {diff['position']}: transformers "
             f"`{diff['hf']!r}` vs GGUF `{diff['gguf']!r}`")
    return (f"**Parity with the transformers model**: {p['agreement']:.1%} of {p['tokens']} greedy tokens agree "
            f"over {p['prompts']} held-out prompts; {where}. Prompt text identical: {p['template_matches']:.0%}, "
            f"token ids identical: {p['tokenizer_matches']:.0%}.")


def markdown(report: Report) -> str:
    """The report for the page: each result, its size on disk and where it went."""
    lines = ["| result | size on disk | where |", "|---|---|---|"]
    lines += [f"| {i['what']} | {human(i['bytes'])} | `{i['path']}` |" for i in report.items]
    if report.parity:
        lines += ["", parity_line(report.parity)]
    if report.ollama:
        lines += ["", "**Register it with Ollama:**", "", "```", report.ollama, "```"]
    if report.pushed:
        lines += ["", f"**Pushed** (private unless you unticked it): {report.pushed}"]
    lines += [f"\n{n}" for n in report.notes]
    return "\n".join(lines)
