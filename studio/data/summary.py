"""Each source of a `name | subset | weight` text on its own: what it is, how many rows it
gives, its share of the blend, or the one problem that stops it (the Data tab's table).

Lines are parsed one by one, so a bad line is reported on its own row and the others are
still counted. Hub datasets are not opened here: that would probe the network on every
edit; the blend preview reads them.
"""
from __future__ import annotations

from studio.data.errors import DataError
from studio.data.preview import inspect_source
from studio.data.shares import oversampled, weight_by_size  # noqa: F401 (weight_by_size: public name kept)
from studio.data.sources import parse_source_lines

MISSING_FIX = "check the path, or upload the file with the button above"


def _fix(message: str) -> str:
    """The data layer's message, with the fix named where it only says what is wrong."""
    if message.endswith("does not exist"):
        return f"{message}: {MISSING_FIX}"
    return message


def _inspect(source, index: int) -> dict:
    """format, rows and bad rows of a file source, or its error."""
    try:
        info = inspect_source(source, index)
    except (DataError, OSError, ValueError) as exc:
        return {"error": _fix(getattr(exc, "message", None) or str(exc))}
    out = {"format": info.get("format"), "kind": info.get("kind"), "rows": info.get("ok"), "bad": info.get("bad", 0),
           "streamed": info.get("streamed", False), "detected": info.get("detected")}
    if info.get("format") == "unknown":
        out["error"] = (f"format unknown ({info.get('note') or 'no known columns'}): pick its format below, "
                        "or add format=NAME to its line")
    return out


def _shares(out: list[dict]) -> None:
    """share = weight / sum of weights of the usable sources (the blend's requested share);
    by_size and a suggested weight when every usable source was counted."""
    usable = [s for s in out if not s.get("error")]
    total_w = sum(s["weight"] for s in usable)
    counted = all(isinstance(s.get("rows"), int) and not s.get("streamed") for s in usable)
    total_rows = sum(s["rows"] for s in usable) if counted else 0
    for s in usable:
        s["share"] = s["weight"] / total_w if total_w else None
        if not (counted and total_rows and len(usable) > 1 and s["rows"]):
            continue
        s["by_size"] = s["rows"] / total_rows
        if oversampled(s["share"], s["by_size"]):
            s["suggest"] = weight_by_size(s["rows"], total_rows - s["rows"], total_w - s["weight"])


def summarize_sources(text: str) -> list[dict]:
    """One dict per source line (blank and comment lines skipped): line (1-based), path,
    kind, subset, split, weight, format, rows, bad, share, by_size, suggest, error."""
    out = []
    for n, line in enumerate((text or "").splitlines(), 1):
        if line.lstrip().startswith("#") or not line.split("#", 1)[0].strip():
            continue
        entry: dict = {"line": n, "path": line.split("#", 1)[0].split("|")[0].strip(), "weight": 1.0}
        try:
            source = parse_source_lines(line)[0]
        except DataError as exc:
            entry["error"] = exc.message
            out.append(entry)
            continue
        entry.update(path=source.path, kind=source.kind, subset=source.subset, split=source.split,
                     weight=source.weight, format_setting=source.format)
        if source.kind == "file":
            entry.update(_inspect(source, len(out)))
        else:
            entry.update(format=None, rows=None)
        out.append(entry)
    _shares(out)
    return out
