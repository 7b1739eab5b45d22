"""The data check that runs in the launching process (CLI train, the UI's Start), before
a run directory exists: every local source is sniffed and a sample of its rows is read,
its format detected and matched against the method's data kind, and normalised.

Without it these problems showed only after the worker had started (an ORPO run on SFT
data read "The spec is valid" and failed 11 s later). Each problem says what is wrong
with the file in its own words (empty, binary, a line over the limit, every line broken,
columns of no known format, the wrong kind for the method), never just "set the format".

Hub datasets are not sampled here: reading one may mean a download, or ~25 s of retries
offline, too slow for a check that runs on every edit; the worker checks them.
Light: no datasets/torch import (only pyarrow for a parquet sample).
"""
from __future__ import annotations

from pathlib import Path

from studio.data.errors import DataError
from studio.spec import Problem, RunSpec

SAMPLE_ROWS = 200  # lines (or rows) read from the start of each source
SNIFF_BYTES = 8192
# What a binary file most likely is, from its first bytes, for the message.
MAGIC = {b"PK\x03\x04": "a zip archive", b"\x1f\x8b": "gzip-compressed", b"PAR1": "a parquet file",
         b"%PDF": "a PDF document", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
         b"SQLite format 3": "an SQLite database", b"\x7fELF": "a program (ELF)",
         b"\xff\xfe": "UTF-16 text", b"\xfe\xff": "UTF-16 text", b"BZh": "bzip2-compressed",
         b"\xfd7zXZ": "xz-compressed", b"\x28\xb5\x2f\xfd": "zstd-compressed"}


def refuse_unreadable(path: Path) -> None:
    """Raise a DataError (field "path") for a file that holds no rows at all: empty, or
    binary where text is expected (a parquet file must start with its magic bytes)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise DataError("path", f"cannot read '{path.name}': {exc.strerror or exc}") from None
    if size == 0:
        raise DataError("path", f"'{path.name}' is empty (0 bytes); point at the file that holds the rows")
    what = next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)
    if path.suffix.lower() == ".parquet":
        if what != "a parquet file":
            raise DataError("path", f"'{path.name}' is not a parquet file (it does not start with PAR1"
                            + (f"; it looks like {what}" if what else "") + ")")
        return
    if what == "UTF-16 text":  # its ASCII letters hold NUL bytes: name it, not "binary"
        raise DataError("path", f"'{path.name}' is UTF-16 text; save it as UTF-8")
    if b"\0" in head or what is not None:
        looks = f"it looks like {what}" if what else f"NUL bytes in its first {len(head)} bytes"
        raise DataError("path", f"'{path.name}' is a binary file, not {path.suffix or 'text'} text ({looks}); "
                        "export the rows as UTF-8 JSON lines, CSV or parquet")


def _sample(spec: RunSpec, index: int):
    """The first SAMPLE_ROWS rows of a local source (a Raw), or None when it is not
    sampled here (a hub dataset, a dataset folder)."""
    from studio.data.sources import read_file, read_local, resolve_path

    src = spec.data.sources[index]
    if src.kind != "file":
        return None
    path = resolve_path(src.path, f"data.sources.{index}.path")
    if not path.is_dir():
        return read_local(src, f"data.sources.{index}", limit=SAMPLE_ROWS)
    first = first_data_file(path, f"data.sources.{index}.path")
    if first is None:
        return None  # a saved dataset (save_to_disk): datasets reads it in the worker
    try:  # a folder of data files: its first file stands for the sample
        return read_file(first, src.format, limit=SAMPLE_ROWS)
    except DataError as exc:
        raise DataError(f"data.sources.{index}.path", f"in folder '{path}': {exc.message}") from None


def first_data_file(path: Path, field: str, look_at: int = 2000) -> Path | None:
    """The first data file (by name) under a folder given as a source; None for a saved
    dataset. A folder with no data file ('/etc', a model folder) would otherwise fail only
    in the worker. Looks at a bounded number of entries: a huge folder costs a glance."""
    import itertools

    from studio.data.sources import FILE_SUFFIXES

    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        return None
    try:
        entries = list(itertools.islice(path.rglob("*"), look_at))
    except OSError:
        entries = []
    files = sorted(p for p in entries if p.suffix.lower() in FILE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(field, f"'{path}' is a folder with no data files ({', '.join(FILE_SUFFIXES)}) "
                        "and no saved dataset; give a data file, or a folder that holds them")
    return files[0]


def data_problems(spec: RunSpec) -> list[Problem]:
    """Every data problem a sample of the sources shows for this spec's method, each
    naming its source (data.sources.N...) and the fix. [] when all is well, or when the
    method is unknown (validate() reports that)."""
    from studio.data.formats import FORMATS
    from studio.data.mix import SourceReport, _format_of, choose_kind, normalize_rows
    from studio.methods import REGISTRY

    info = REGISTRY.get(spec.method.name)
    if info is None or not spec.data.sources:
        return []
    kinds = tuple(info.data_kinds) or ("conversation",)
    problems: list[Problem] = []
    sampled: list[tuple[int, object, str]] = []  # (source index, raw sample, format)
    for i in range(len(spec.data.sources)):
        try:
            raw = _sample(spec, i)
            if raw is not None:
                sampled.append((i, raw, _format_of(spec.data.sources[i], raw, i, kinds)[0]))
        except DataError as exc:
            problems.append(Problem(exc.field, exc.message))
        except OSError as exc:
            problems.append(Problem(f"data.sources.{i}.path", f"cannot read it: {exc.strerror or exc}"))
    if problems or not sampled:
        return problems
    try:
        kind = choose_kind(spec, [fmt for _, _, fmt in sampled], kinds,
                           [spec.data.sources[i].kind == "file" for i, _, _ in sampled])
    except DataError as exc:
        # choose_kind numbers the sources it was given; name the spec's own index
        at = int(exc.field.rsplit(".", 1)[1])
        return [Problem(f"data.sources.{sampled[at][0]}", exc.message)]
    for i, raw, fmt in sampled:
        report = SourceReport(i, spec.data.sources[i].path, fmt, "", FORMATS[fmt].kind)
        if not normalize_rows(raw, fmt, kind, report):
            problems.append(Problem(f"data.sources.{i}", _no_usable(raw, kind, report)))
    return problems


def _no_usable(raw, kind: str, report) -> str:
    top = ", ".join(f"{r} ({n})" for r, n in sorted(report.reasons.items(), key=lambda kv: -kv[1])[:3])
    first = f"; e.g. line {report.examples[0][0]}: {report.examples[0][1]}" if report.examples else ""
    return (f"none of the first {report.bad} rows of '{Path(raw.label).name}' can be used as {kind} rows: "
            f"{top}{first}. Fix those rows, or pick the file that holds {kind} data")


# -- the messages the worker's loader shares (studio.data.mix) ---------------------------


def _name(raw) -> str:
    return Path(raw.label).name or raw.label


def no_rows_message(raw) -> str:
    """Why a file gave no rows at all: only blank lines, or every line bad (and why)."""
    if not raw.bad:
        return f"'{_name(raw)}' holds no rows (only blank lines); point at the file that holds the data"
    reasons: dict[str, int] = {}
    for _, reason in raw.bad:
        reasons[reason] = reasons.get(reason, 0) + 1
    top = ", ".join(f"{r} ({n})" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    lines = "1 line" if len(raw.bad) == 1 else f"{len(raw.bad)} lines"
    return (f"no readable rows in '{_name(raw)}' ({lines} read, all bad: {top}; first at line "
            f"{raw.bad[0][0]}). Fix or re-export the file")


def columns_message(raw, columns: list[str], kinds: tuple[str, ...], index: int) -> str:
    """Rows whose columns fit no format: the columns it has, and what the method reads."""
    from studio.data.formats import FORMATS, KIND_NEEDS

    needs = " or ".join(KIND_NEEDS[k] for k in kinds) if kinds else "the columns of a known format"
    return (f"'{_name(raw)}' has columns {', '.join(columns[:8])}, which match no known format; this method "
            f"needs {needs}. Rename the columns, or set data.sources.{index}.format if they hold one of: "
            f"{', '.join(FORMATS)}")
