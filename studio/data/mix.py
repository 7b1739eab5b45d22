"""From a spec's sources to the datasets a method trains on: read, detect, normalise to
one kind, hold out an eval split, and blend by weight.

Mixing is datasets.interleave_datasets (probabilities from the weights, seeded) or
concatenate_datasets; the only hand-written part is per-row normalisation, because
Arrow cannot even load rows whose shapes disagree.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

from studio.data.errors import DataError
from studio.data.formats import FORMATS, KIND_NEEDS, detect_format, kinds_for
from studio.data.normalize import convert, normalize
from studio.data.preflight import columns_message, no_rows_message
from studio.data.sources import Raw, read_source
from studio.spec import DataSource, RunSpec

SOURCE_COLUMN = "_source"  # kept only by the preview, to say which source a row came from
MAX_EXAMPLES = 5  # bad rows shown per source
PARALLEL_FROM = 50_000  # rows from which a datasets map runs in several processes


def map_procs(ds) -> int | None:
    """Processes for a `datasets` map over `ds`: up to 4 for a large in-memory set, None
    (in this process) below PARALLEL_FROM rows, where starting processes costs more than
    they save, and for a stream (an IterableDataset maps lazily, in one process)."""
    import datasets

    if not isinstance(ds, datasets.Dataset) or len(ds) < PARALLEL_FROM:
        return None
    return min(4, os.cpu_count() or 1)


@dataclass
class SourceReport:
    index: int
    path: str
    format: str  # the format used
    detected: str  # what detection said ("" when the format was set by hand)
    native_kind: str | None
    kind: str | None = None  # the kind its rows were turned into
    rows: int | None = 0  # raw rows read (None: streamed, unknown)
    ok: int | None = 0  # rows that made it into train + eval
    train_rows: int | None = 0
    eval_rows: int | None = 0
    eval_from: str = ""  # "test file ...", "10% split", "" (none)
    bad: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    weight: float = 1.0
    note: str = ""

    def add_bad(self, line: int, reason: str) -> None:
        self.bad += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line, reason))

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["examples"] = [{"line": line, "reason": r} for line, r in self.examples]
        d["reasons"] = dict(sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        return d

    def summary(self) -> str:
        text = f"[{self.index}] {self.path}: {self.format} -> {self.kind}, {self.ok} rows"
        if self.bad:
            top = ", ".join(f"{r} ({n})" for r, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:3])
            text += f", {self.bad} bad: {top}"
        return text


@dataclass
class DataBundle:
    train: Any  # datasets.Dataset (datasets.IterableDataset when a source streams)
    eval: Any  # datasets.Dataset | None
    kind: str
    report: list[SourceReport]
    parts: list = field(default_factory=list, repr=False)  # each source's own train set, before mixing

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.report)

    def dropped(self) -> dict:
        """Rows left out as bad while loading, over every counted (not streamed) source:
        {"rows": read, "dropped": left out, "reasons": {reason: count}}."""
        reasons: dict[str, int] = {}
        for rep in self.report:
            for reason, n in rep.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
        return {"rows": sum(r.rows or 0 for r in self.report), "dropped": sum(r.bad for r in self.report),
                "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}

    def dropped_text(self) -> str:
        """'dropped 10 of 210 rows: malformed JSON (10)', or 'dropped no rows (210 read)'."""
        d = self.dropped()
        if not d["dropped"]:
            return f"dropped no rows ({d['rows']} read)"
        top = ", ".join(f"{r} ({n})" for r, n in list(d["reasons"].items())[:5])
        return f"dropped {d['dropped']} of {d['rows']} rows: {top}"


def features_for(kind: str, with_answer: bool = False, with_source: bool = False):
    """The Arrow schema of a kind, so every source of a blend lines up exactly."""
    from datasets import Features, List, Value

    msgs = List({"role": Value("string"), "content": Value("string")})
    cols = {
        "text": {"text": Value("string")},
        "conversation": {"messages": msgs},
        "preference": {"prompt": msgs, "chosen": msgs, "rejected": msgs},
        "unpaired": {"prompt": msgs, "completion": msgs, "label": Value("bool")},
        "prompt": {"prompt": msgs, "answer": Value("string")},
    }[kind]
    if with_answer and kind != "text":
        cols["answer"] = Value("string")
    if with_source:
        cols[SOURCE_COLUMN] = Value("int32")
    return Features(cols)


# -- choosing the kind ---------------------------------------------------------------


def _method_title(spec: RunSpec) -> str:
    return spec.method.name.upper() if len(spec.method.name) <= 5 else spec.method.name


def choose_kind(spec: RunSpec, formats: list[str], kinds: tuple[str, ...], labels: list[str]) -> str:
    """The first kind every source provides natively, else the first every source can be
    converted to; otherwise an error naming the first source that fits none."""
    for kind in kinds:
        if all(FORMATS[f].kind == kind for f in formats):
            return kind
    for kind in kinds:
        if all(kind in kinds_for(f) for f in formats):
            return kind
    needs = " or ".join(KIND_NEEDS[k] for k in kinds)
    # the source to blame: one that can serve none of the kinds, else the odd one out
    for i, f in enumerate(formats):
        if not set(kinds) & set(kinds_for(f)):
            what = "this file" if labels[i] else "this dataset"
            raise DataError(f"data.sources.{i}", f"{_method_title(spec)} needs {needs}; "
                            f"{what} is {FORMATS[f].title}")
    i = len(formats) - 1
    raise DataError(f"data.sources.{i}", f"{_method_title(spec)} needs {needs}, and the sources cannot "
                    f"all be turned into one of them; this one is {FORMATS[formats[i]].title}")


# -- per source ------------------------------------------------------------------------


def _format_of(source: DataSource, raw: Raw, index: int, kinds: tuple[str, ...] = ()) -> tuple[str, str]:
    """(format to use, what detection said). `kinds`: what the method reads, named in the
    message when the columns fit no format."""
    if source.format not in ("auto", "", None):
        if source.format not in FORMATS:
            raise DataError(f"data.sources.{index}.format", f"'{source.format}' is not a format; "
                            f"use auto or one of {', '.join(FORMATS)}")
        return source.format, ""
    if raw.rows is not None and not raw.rows:
        raise DataError(f"data.sources.{index}", no_rows_message(raw))
    if raw.fixed_format:
        return raw.fixed_format, raw.fixed_format
    guess = detect_format(raw.sample(200))
    if guess.name == "unknown":
        if guess.columns:  # wrong columns: say which it has and which a format needs
            raise DataError(f"data.sources.{index}.format", columns_message(raw, guess.columns, kinds, index))
        raise DataError(f"data.sources.{index}.format", f"could not tell the format of '{raw.label}': {guess.note}")
    return guess.name, guess.name


def normalize_rows(raw: Raw, fmt: str, kind: str, report: SourceReport) -> list[dict]:
    """Raw rows -> rows of `kind`; each bad row is counted in the report with its reason."""
    native = FORMATS[fmt].kind
    out: list[dict] = []
    for line, reason in raw.bad:
        report.add_bad(line, reason)
    for i, row in enumerate(raw.rows):
        norm, reason = normalize(row, fmt)
        if norm is not None:
            rows, reason = convert(norm, native, kind)
            if rows:
                out.extend(rows)
                continue
        report.add_bad(raw.line_of(i), reason or "unusable row")
    return out


def _normalizer(fmt: str, kind: str, columns: list[str], source: int, keep_bad: bool):
    """A batched map function: raw columns -> the kind's columns (+ _source), and, with
    keep_bad, one placeholder row per bad row carrying its reason in _bad."""
    native = FORMATS[fmt].kind
    placeholder = {"text": "", "messages": [], "prompt": [], "chosen": [], "rejected": [],
                   "completion": [], "label": False, "answer": None}

    def fn(batch, indices=None):
        keys = list(batch)
        n = len(batch[keys[0]]) if keys else 0
        out = {c: [] for c in columns}
        for i in range(n):
            norm, reason = normalize({k: batch[k][i] for k in keys}, fmt)
            rows = []
            if norm is not None:
                rows, reason = convert(norm, native, kind)
            extra = {SOURCE_COLUMN: source, "_bad": None, "_line": indices[i] + 1 if indices else None}
            if not rows and keep_bad:
                rows = [{**placeholder, "_bad": reason or "unusable row"}]
            for row in rows:
                for c in columns:
                    out[c].append(row[c] if c in row else extra.get(c))
        return out

    return fn


def _normalize_dataset(ds, fmt: str, kind: str, report: SourceReport, source: int):
    """A loaded hub dataset -> the kind's rows, as a batched map (several processes for
    large sets); bad rows are counted from the _bad column, then left out."""
    import numpy as np
    import pyarrow.compute as pc
    from datasets import Features, Value

    features = Features({**features_for(kind, True, True), "_bad": Value("string"), "_line": Value("int64")})
    out = ds.map(_normalizer(fmt, kind, list(features), source, keep_bad=True), batched=True,
                 with_indices=True, remove_columns=ds.column_names, features=features, num_proc=map_procs(ds),
                 desc=f"normalising {report.path}")
    is_bad = pc.is_valid(out.data.column("_bad")).to_numpy(zero_copy_only=False)
    bad_rows = np.flatnonzero(is_bad)
    if len(bad_rows):
        flagged = out.select(bad_rows)
        for line, reason in zip(flagged["_line"], flagged["_bad"]):
            report.add_bad(line, reason)
    return out.select(np.flatnonzero(~is_bad)).remove_columns(["_bad", "_line"])


def _streamed(raw: Raw, fmt: str, kind: str, source: int):
    """A streamed source, normalised lazily; bad rows are skipped (they cannot be
    counted up front, and the report says so)."""
    features = features_for(kind, True, True)
    fn = _normalizer(fmt, kind, list(features), source, keep_bad=False)
    return raw.dataset.map(fn, batched=True, remove_columns=raw.dataset.column_names, features=features)


def _split_eval(ds, fraction: float, seed: int):
    """(train, eval) with a seeded random eval set; train keeps the source order."""
    n = len(ds)
    if fraction <= 0 or n < 2:
        return ds, None
    n_eval = min(n - 1, max(1, round(n * fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return ds.select(sorted(order[n_eval:])), ds.select(sorted(order[:n_eval]))


def _normalized(raw: Raw, fmt: str, kind: str, report: SourceReport, source: int):
    """Any non-streamed Raw -> a Dataset of the kind (with answer and _source columns)."""
    if raw.rows is not None:
        return _dataset(normalize_rows(raw, fmt, kind, report), kind, source)
    return _normalize_dataset(raw.dataset, fmt, kind, report, source)


# -- the whole blend -----------------------------------------------------------------


def load_sources(spec: RunSpec, kinds: tuple[str, ...]):
    """Read and normalise every source: ([(train, eval or None)], kind, reports), each
    dataset with the kind's columns plus answer and _source."""
    if not spec.data.sources:
        raise DataError("data.sources", "add at least one source (a file or a hub dataset)")
    kinds = tuple(kinds) or ("conversation",)
    raws, formats, reports = [], [], []
    for i, src in enumerate(spec.data.sources):
        if not (isinstance(src.weight, (int, float)) and src.weight > 0):
            raise DataError(f"data.sources.{i}.weight", f"weights must be positive, got {src.weight}")
        raw = read_source(src, i)
        fmt, detected = _format_of(src, raw, i, kinds)
        raws.append(raw)
        formats.append(fmt)
        reports.append(SourceReport(i, src.path, fmt, detected, FORMATS[fmt].kind, weight=src.weight))
    kind = choose_kind(spec, formats, kinds, [s.kind == "file" for s in spec.data.sources])
    frac, seed = spec.data.eval_fraction, spec.data.seed
    parts = []
    for i, (raw, fmt, rep) in enumerate(zip(raws, formats, reports)):
        rep.kind = kind
        if raw.streamed:
            rep.rows = rep.ok = rep.train_rows = rep.eval_rows = None
            rep.note = "streamed: rows and bad rows are not counted ahead of training"
            parts.append((_streamed(raw, fmt, kind, i), None))
            continue
        train = _normalized(raw, fmt, kind, rep, i)
        rep.rows = raw.count
        if raw.test is not None and not raw.test.streamed and frac > 0:
            test_rep = SourceReport(i, raw.test.label, fmt, "", FORMATS[fmt].kind)
            evals = _normalized(raw.test, fmt, kind, test_rep, i)
            rep.eval_from = f"{raw.test.label} ({len(evals)} rows, {test_rep.bad} bad)"
        else:
            train, evals = _split_eval(train, frac, seed + i)
            if evals is not None:
                rep.eval_from = f"{frac:.0%} of the rows, seed {seed + i}"
        if not len(train):
            top = ", ".join(f"{r} ({n})" for r, n in sorted(rep.reasons.items(), key=lambda kv: -kv[1])[:3])
            raise DataError(f"data.sources.{i}", f"no usable rows in '{raw.label}' as {kind}"
                            + (f": {rep.bad} bad rows, e.g. {top}" if rep.bad else ": it is empty"))
        n_eval = len(evals) if evals is not None else 0
        rep.ok, rep.train_rows, rep.eval_rows = len(train) + n_eval, len(train), n_eval
        parts.append((train, evals if n_eval else None))
    return parts, kind, reports


def _dataset(rows: list[dict], kind: str, source: int):
    import pyarrow as pa
    from datasets import Dataset

    features = features_for(kind, True, True)
    data = {c: [r.get(c) for r in rows] for c in features if c != SOURCE_COLUMN}
    data[SOURCE_COLUMN] = [source] * len(rows)
    # straight to Arrow with the kind's schema: 10x faster than Dataset.from_dict's
    # per-value encoding, and the rows are already plain strings/bools/lists
    return Dataset(pa.Table.from_pydict(data, schema=features.arrow_schema))


def _all_null(ds, column: str) -> bool:
    import datasets

    if not isinstance(ds, datasets.Dataset):
        return False  # a stream: cannot tell without reading it
    col = ds.data.column(column)
    return col.null_count == len(col)


def mix(spec: RunSpec, kinds: tuple[str, ...], keep_source: bool = False, prepare=None) -> DataBundle:
    """build(), optionally keeping the _source column (the preview's view of the blend)."""
    import datasets

    parts, kind, reports = load_sources(spec, kinds)
    train_sets = [t for t, _ in parts]
    eval_sets = [e.remove_columns(SOURCE_COLUMN) for _, e in parts if e is not None]
    if not keep_source:
        train_sets = [t.remove_columns(SOURCE_COLUMN) for t in train_sets]
    if kind not in ("prompt", "text") and all(_all_null(d, "answer") for d in train_sets + eval_sets):
        # only the prompt kind always carries answer; elsewhere it stays when a source has one
        train_sets = [d.remove_columns("answer") for d in train_sets]
        eval_sets = [d.remove_columns("answer") for d in eval_sets]
    if any(not isinstance(d, datasets.Dataset) for d in train_sets):
        train_sets = [d.to_iterable_dataset() if isinstance(d, datasets.Dataset) else d for d in train_sets]
    train = _blend(train_sets, spec.data)
    if prepare is not None:
        # A blend that repeats rows (all_exhausted oversamples the smaller sources) has its
        # sources prepared, so each row once (all in one map: one large map runs in
        # processes where small ones would not), then blended again: same lengths and seed,
        # so the same rows in the same order. One that leaves rows out (first_exhausted,
        # max_rows, a stream, which prepares lazily) is prepared itself.
        sizes = [len(t) for t in train_sets] if isinstance(train, datasets.Dataset) else None
        if sizes is not None and len(train) > sum(sizes):
            prepared = prepare(datasets.concatenate_datasets(train_sets))
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            train_sets = [prepared.select(range(a, a + n)) for a, n in zip(starts, sizes)]
            train = _blend(train_sets, spec.data)
        else:
            train = prepare(train)
    evals = datasets.concatenate_datasets(eval_sets) if eval_sets else None
    return DataBundle(train=train, eval=evals, kind=kind, report=reports, parts=train_sets)


def _blend(train_sets: list, d):
    """The sources as one training set: interleaved by weight or concatenated, then cut to max_rows."""
    import datasets

    if len(train_sets) == 1:
        train = train_sets[0]
    elif d.mixing == "concat":
        train = datasets.concatenate_datasets(train_sets)
    else:
        weights = [s.weight for s in d.sources]
        total = sum(weights)
        train = datasets.interleave_datasets(train_sets, probabilities=[w / total for w in weights],
                                             seed=d.seed, stopping_strategy=d.stopping_strategy)
    if d.max_rows:
        train = train.select(range(min(d.max_rows, len(train)))) if isinstance(train, datasets.Dataset) \
            else train.take(d.max_rows)
    return train


def build(spec: RunSpec, kinds: tuple[str, ...], prepare=None) -> DataBundle:
    """The training and eval datasets for a run, normalised to one of `kinds` (the
    method's data_kinds, preferred first). Raises DataError naming the source at fault.

    `prepare(dataset) -> dataset` (e.g. tokenising) is applied to the training rows, keeping
    their number, before a blend repeats any of them (so each row is prepared once). The
    eval rows are left as they are: never repeated, and often trimmed before use."""
    return mix(spec, kinds, keep_source=False, prepare=prepare)
