"""Where rows come from: local files (inside the allowed data roots when hosted) and hub datasets.

Local files are read here, line by line, so a malformed line becomes a reported bad row
instead of an Arrow parse error that loses the whole file. Hub datasets go through
`datasets.load_dataset` (the local cache works offline); a folder written by
`Dataset.save_to_disk` is read with `load_from_disk`.
"""
# Over ~400 lines on purpose: every way a source is read (file, folder, hub, cache, stream) sits beside the one confinement rule they share.
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.data.errors import DataError
from studio.spec import DataSource

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".ndjson", ".tsv")
MAX_LINE_BYTES = 8_000_000  # a longer line is a broken export, not a training example
ROOTS_ENV = "STUDIO_DATA_ROOTS"
UPLOADS_ENV = "STUDIO_UPLOADS_DIR"


# -- allowed roots ----------------------------------------------------------------------


def uploads_dir(runs_dir: str | Path | None = None) -> Path:
    """Where the browser's uploads are copied: STUDIO_UPLOADS_DIR, else `uploads/` beside
    the runs folder (runs_dir, STUDIO_RUNS_DIR or ./runs), the studio's data directory."""
    if os.environ.get(UPLOADS_ENV):
        return Path(os.environ[UPLOADS_ENV]).expanduser().resolve()
    return Path(runs_dir or os.environ.get("STUDIO_RUNS_DIR") or "runs").expanduser().resolve().parent / "uploads"


def allowed_roots() -> list[Path]:
    """Folders a hosted server reads data from: ./assets, the uploads folder, and the
    folders in STUDIO_DATA_ROOTS (separated by os.pathsep; `python app.py --data-root DIR`
    adds to it). Read on every call: no cached state."""
    roots = [(Path.cwd() / "assets").resolve(), uploads_dir()]
    for part in os.environ.get(ROOTS_ENV, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser().resolve())
    return roots


def resolve_path(path: str, field_name: str = "data.sources") -> Path:
    """An existing path, symlinks and '..' resolved. A hosted server (studio.policy)
    also requires it inside the allowed roots; on a person's own machine (the CLI, the
    local app) any readable path works."""
    from studio import policy

    if not isinstance(path, str) or not path.strip() or "\0" in path:
        raise DataError(field_name, "give a file path")
    resolved = (Path.cwd() / Path(path.strip()).expanduser()).resolve()
    if policy.hosted():
        roots = allowed_roots()
        if not policy.inside(resolved, roots):
            # the same words as before ("outside the allowed data folders"), plus the flag
            raise DataError(field_name, policy.outside_message(path, roots))
    if not resolved.exists():
        raise DataError(field_name, f"'{path}' does not exist")
    return resolved


# -- the `name | subset | weight` lines -------------------------------------------------------


def _looks_like_path(name: str) -> bool:
    return (name.lower().endswith(FILE_SUFFIXES) or name.startswith((".", "/", "~"))
            or Path(name).expanduser().exists())


OPTION_KEYS = ("format", "split", "streaming")  # `key=value` cells after the name


def _line_options(cells: list[str], n: int) -> dict:
    """`format=alpaca`, `split=test`, `streaming=true` cells, so the text box that Start
    reads can carry what the Data tab's format override sets."""
    from studio.data.formats import FORMATS

    opts = {}
    for cell in cells:
        key, _, value = (x.strip() for x in cell.partition("="))
        if key not in OPTION_KEYS:
            raise DataError(f"line {n}", f"'{key}=' is not an option; use {', '.join(k + '=' for k in OPTION_KEYS)}")
        if key == "format" and value != "auto" and value not in FORMATS:
            raise DataError(f"line {n}", f"format '{value}' is not known; use auto or one of {', '.join(FORMATS)}")
        if key == "streaming":
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise DataError(f"line {n}", f"streaming={value}: write streaming=true or streaming=false")
            value = value.lower() in ("true", "yes", "1")
        if key == "split" and not value:
            raise DataError(f"line {n}", "split= needs a split name, e.g. split=train")
        opts[key] = value
    return opts


def parse_source_lines(text: str) -> list[DataSource]:
    """`name | subset | weight [| split]` per line (subset, weight optional; '#' starts a
    comment), plus optional `format=NAME`, `split=NAME`, `streaming=true` cells after the
    name. A name that is a local path or has a data-file suffix becomes a file source."""
    sources = []
    for n, line in enumerate((text or "").splitlines(), 1):
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        opts = _line_options([p for p in parts[1:] if "=" in p], n)
        parts = parts[:1] + [p for p in parts[1:] if "=" not in p]
        if len(parts) > 4:
            raise DataError(f"line {n}", "write name | subset | weight (| split); too many '|'")
        name = parts[0]
        if not name:
            raise DataError(f"line {n}", "the line starts with '|': put the dataset name or file first")
        subset = parts[1] if len(parts) > 1 and parts[1] else None
        weight = 1.0
        if len(parts) > 2 and parts[2]:
            try:
                weight = float(parts[2])
            except ValueError:
                raise DataError(f"line {n}", f"weight '{parts[2]}' is not a number, e.g. 0.5") from None
            if not weight > 0:
                raise DataError(f"line {n}", f"weight must be positive, got {parts[2]}")
        split = opts.get("split") or (parts[3] if len(parts) > 3 and parts[3] else "train")
        is_file = _looks_like_path(name) and Path(name).expanduser().suffix.lower() in FILE_SUFFIXES
        sources.append(DataSource(kind="file" if is_file else "hub", path=name,
                                  subset=None if is_file else subset, split=split, weight=weight,
                                  format=opts.get("format", "auto"), streaming=opts.get("streaming", False)))
    return sources


def format_source_lines(sources: list[DataSource]) -> str:
    """The inverse of parse_source_lines, for showing a spec's sources as text."""
    lines = []
    for s in sources:
        parts = [s.path, s.subset or "", f"{s.weight:g}"]
        if s.split != "train":
            parts.append(s.split)
        if s.format not in ("auto", "", None):
            parts.append(f"format={s.format}")
        if s.streaming:
            parts.append("streaming=true")
        lines.append(" | ".join(parts))
    return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------


@dataclass
class Raw:
    """What a source gave before normalisation: rows as Python objects (local files) or
    a datasets object (hub; an IterableDataset when streamed), plus rows that could not
    be read."""

    label: str  # the path or hub name, for messages
    rows: list | None = None
    dataset: Any = None  # datasets.Dataset, or IterableDataset when streaming
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line or row number, reason)
    test: "Raw | None" = None  # the source's own held-out split, when it has one
    fixed_format: str | None = None  # a reader that already knows the format (.txt)
    lines: list[int] = field(default_factory=list)  # the line (or row) number of each row

    def add(self, line: int, row: dict) -> None:
        self.rows.append(row)
        self.lines.append(line)

    def line_of(self, i: int) -> int:
        return self.lines[i] if i < len(self.lines) else i + 1

    @property
    def streamed(self) -> bool:
        return self.rows is None and not hasattr(self.dataset, "__len__")

    @property
    def count(self) -> int | None:
        """Rows read, bad lines included (None for a stream)."""
        if self.rows is not None:
            return len(self.rows) + len(self.bad)
        return None if self.streamed else len(self.dataset)

    def sample(self, n: int) -> list:
        """The first n rows, for format detection."""
        if self.rows is not None:
            return self.rows[:n]
        if self.streamed:
            return list(self.dataset.take(n))
        return self.dataset.select(range(min(n, len(self.dataset)))).to_list()


def read_file(path: Path, fmt: str = "auto", limit: int | None = None) -> Raw:
    """A local file's rows; with `limit`, only its first `limit` lines or rows (the
    launch preflight's sample)."""
    from studio.data.preflight import refuse_unreadable

    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataError("path", f"'{path}' is a folder; give a file, or add it as a hub-style dataset folder")
    refuse_unreadable(path)  # empty or binary: its own message, not "no readable rows"
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, limit)
    if suffix == ".json":
        return _read_json(path, limit)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", limit)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            if limit:
                batch = next(pq.ParquetFile(path).iter_batches(batch_size=limit), None)
                return Raw(str(path), rows=batch.to_pylist() if batch is not None else [])
            return Raw(str(path), rows=pq.read_table(path).to_pylist())
        except Exception as exc:  # noqa: BLE001 - any pyarrow failure means an unreadable file
            raise DataError("path", f"'{path.name}' is not a readable parquet file ({exc})") from None
    if suffix == ".txt":
        return _read_txt(path, whole=fmt == "document", limit=limit)
    raise DataError("path", f"'{path.name}': unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")


def _read_jsonl(path: Path, limit: int | None = None) -> Raw:
    raw = Raw(str(path), rows=[])
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if limit and n > limit:
                break
            if len(line) > MAX_LINE_BYTES:
                raw.bad.append((n, f"line is {len(line) / 1e6:.1f} MB, over the "
                                   f"{MAX_LINE_BYTES // 1_000_000} MB limit per row"))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                raw.bad.append((n, "malformed JSON"))
                continue
            if not isinstance(row, dict):
                raw.bad.append((n, f"line is a JSON {type(row).__name__}, not an object"))
                continue
            raw.add(n, row)
    return raw


def _read_json(path: Path, limit: int | None = None) -> Raw:
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        return _read_jsonl(path, limit)  # many ".json" exports are really JSON lines
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
        elif all(isinstance(v, list) for v in data.values()) and data:
            # column-oriented: {"prompt": [...], "answer": [...]}
            n = max(len(v) for v in data.values())
            data = [{k: (v[i] if i < len(v) else None) for k, v in data.items()} for i in range(n)]
        else:
            data = [data]
    if not isinstance(data, list):
        raise DataError("path", f"'{path.name}' holds a JSON {type(data).__name__}; expected a list of rows")
    raw = Raw(str(path), rows=[])
    for n, row in enumerate(data[:limit] if limit else data, 1):
        if isinstance(row, dict):
            raw.add(n, row)
        else:
            raw.bad.append((n, f"row is a JSON {type(row).__name__}, not an object"))
    return raw


def _read_csv(path: Path, delimiter: str, limit: int | None = None) -> Raw:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    raw = Raw(str(path), rows=[])
    # utf-8-sig: spreadsheet exports often start with a byte-order mark
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for row in reader:
                n = reader.line_num
                if limit and len(raw.rows) + len(raw.bad) >= limit:
                    break
                if None in row:
                    raw.bad.append((n, "more cells than header columns"))
                    continue
                raw.add(n, {k: v for k, v in row.items() if v is not None})
        except csv.Error as exc:
            raw.bad.append((reader.line_num, f"unreadable CSV ({exc})"))
    return raw


def _read_txt(path: Path, whole: bool, limit: int | None = None) -> Raw:
    if whole:
        text = path.read_text(encoding="utf-8", errors="replace")
        return Raw(str(path), rows=[{"text": text}], fixed_format="document")
    raw = Raw(str(path), rows=[], fixed_format="text")
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines() if not limit else [fh.readline().rstrip("\r\n") for _ in range(limit)]
    for n, line in enumerate(lines, 1):
        if line.strip():  # blank lines separate nothing in a one-document-per-line file
            raw.add(n, {"text": line})
    return raw


_TRAIN_WORD = re.compile(r"(?<![a-z])train(?![a-z])", re.IGNORECASE)


def sibling_test_file(path: Path) -> Path | None:
    """data_train.jsonl -> data_test.jsonl (or _validation / _val) when that file exists."""
    matches = list(_TRAIN_WORD.finditer(path.name))
    if not matches:
        return None
    m = matches[-1]
    for word in ("test", "validation", "val", "eval"):
        candidate = path.with_name(path.name[: m.start()] + word + path.name[m.end():])
        if candidate.is_file():
            return candidate
    return None


def read_local(source: DataSource, field_name: str, limit: int | None = None) -> Raw:
    path = resolve_path(source.path, field_name + ".path")
    if path.is_dir():
        return read_hub(source, field_name, local_dir=path)
    try:
        raw = read_file(path, source.format, limit)
        test = sibling_test_file(path) if not limit else None
        if test is not None and test != path:
            raw.test = read_file(test, source.format)
    except DataError as exc:
        raise DataError(field_name + ".path", exc.message) from None
    except OSError as exc:
        raise DataError(field_name + ".path", f"cannot read '{source.path}': {exc.strerror or exc}") from None
    return raw


# -- hub ------------------------------------------------------------------------------


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all: without it, load_dataset retries for ~25 s before
    failing, which would freeze the Data tab."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_unless_reachable():
    """Offline mode (cache only) for the duration of a load when the hub cannot be
    reached. The flags are process-wide, so they are restored right after."""
    import datasets
    from huggingface_hub import constants

    if datasets.config.HF_HUB_OFFLINE or hub_reachable():
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _first_split(splits, wanted: tuple[str, ...]):
    return next((s for s in wanted if s in splits), None)


def read_hub(source: DataSource, field_name: str, local_dir: Path | None = None) -> Raw:
    """A hub dataset (or a local dataset folder) as rows, or streamed when asked."""
    import datasets

    from studio import hub

    name = source.path.strip()
    if local_dir is None:
        # name[@revision] in the hub cache (as the hub lays it out): read as a local folder,
        # which works offline and streams; else datasets' own resolution (its prepared cache)
        local_dir = hub.resolve_dataset(name)
    try:
        if local_dir is not None and ((local_dir / "state.json").exists() or (local_dir / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(local_dir))
            splits = loaded if isinstance(loaded, datasets.DatasetDict) else {source.split: loaded}
        else:
            if local_dir is not None:
                splits = datasets.load_dataset(str(local_dir), source.subset or None, streaming=source.streaming)
            else:
                repo, revision = hub.split_id(name)
                with offline_unless_reachable():
                    splits = datasets.load_dataset(repo, source.subset or None, revision=revision,
                                                   streaming=source.streaming)
    except Exception as exc:  # noqa: BLE001 - the library raises many types for "not available"
        raise DataError(field_name, _unreachable(name, exc)) from None
    if source.split not in splits:
        raise DataError(field_name + ".split", f"'{name}' has no split '{source.split}'; "
                        f"it has: {', '.join(splits)}")
    held_out = _first_split([s for s in splits if s != source.split], ("test", "validation", "valid", "eval"))
    train = splits[source.split]
    raw = Raw(name, dataset=train)
    if held_out:
        raw.test = Raw(name + f" [{held_out}]", dataset=splits[held_out])
    return raw


def _unreachable(name: str, exc: Exception) -> str:
    from studio import hub

    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    repo, revision = hub.split_id(name)
    return (f"hub dataset '{repo}' (revision {revision or 'main'}) could not be loaded: it is not in the "
            f"local Hugging Face cache ({hub.hub_cache()}) and the hub is not reachable offline (or the "
            f"name/subset is wrong). Download it once while online (`hf download {repo} --repo-type dataset`), "
            f"or use a local file. [{type(exc).__name__}: {detail}]")


def read_source(source: DataSource, index: int) -> Raw:
    field_name = f"data.sources.{index}"
    if source.kind == "file":
        return read_local(source, field_name)
    if source.kind == "hub":
        candidate = Path(source.path).expanduser()
        if source.path.startswith((".", "/", "~")) or candidate.exists():
            # a local dataset folder written as a hub source: same root rules as files
            path = resolve_path(source.path, field_name + ".path")
            return read_hub(source, field_name, local_dir=path) if path.is_dir() else read_local(source, field_name)
        return read_hub(source, field_name)
    raise DataError(field_name + ".kind", f"'{source.kind}' is not file or hub")
