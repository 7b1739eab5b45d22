"""From a spec's sources to the datasets a method trains on: read, detect, normalise to
one kind, hold out an eval split, and blend by weight.

Mixing is datasets.interleave_datasets (probabilities from the weights, seeded) or
concatenate_datasets; the only hand-written part is per-row normalisation, because
Arrow cannot even load rows whose shapes disagree.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from studio.data.errors import DataError
from studio.data.formats import FORMATS, KIND_NEEDS, detect_format, kinds_for
from studio.data.normalize import convert, normalize
from studio.data.sources import Raw, read_source
from studio.spec import DataSource, RunSpec

SOURCE_COLUMN = "_source"  # kept only by the preview, to say which source a row came from
MAX_EXAMPLES = 5  # bad rows shown per source


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


def _format_of(source: DataSource, raw: Raw, index: int) -> tuple[str, str]:
    """(format to use, what detection said)."""
    if source.format not in ("auto", "", None):
        if source.format not in FORMATS:
            raise DataError(f"data.sources.{index}.format", f"'{source.format}' is not a format; "
                            f"use auto or one of {', '.join(FORMATS)}")
        return source.format, ""
    if raw.fixed_format:
        return raw.fixed_format, raw.fixed_format
    sample = raw.rows if raw.rows is not None else list(raw.dataset.take(200))
    guess = detect_format(sample)
    if guess.name == "unknown":
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


def _streamed(raw: Raw, fmt: str, kind: str, features):
    """A streamed source, normalised lazily; bad rows are skipped (they cannot be
    counted up front, and the report says so)."""
    native = FORMATS[fmt].kind
    columns = list(features)

    def batch_fn(batch):
        keys = list(batch)
        n = len(batch[keys[0]]) if keys else 0
        out = {c: [] for c in columns}
        for i in range(n):
            norm, _ = normalize({k: batch[k][i] for k in keys}, fmt)
            for row in (convert(norm, native, kind)[0] if norm else []):
                for c in columns:
                    out[c].append(row.get(c))
        return out

    return raw.dataset.map(batch_fn, batched=True, remove_columns=raw.dataset.column_names, features=features)


def _split_eval(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if fraction <= 0 or len(rows) < 2:
        return rows, []
    n_eval = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


# -- the whole blend -----------------------------------------------------------------


def load_sources(spec: RunSpec, kinds: tuple[str, ...]):
    """Read and normalise every source: ([(train rows | dataset, eval rows)], kind, reports)."""
    if not spec.data.sources:
        raise DataError("data.sources", "add at least one source (a file or a hub dataset)")
    kinds = tuple(kinds) or ("conversation",)
    raws, formats, reports = [], [], []
    for i, src in enumerate(spec.data.sources):
        raw = read_source(src, i)
        fmt, detected = _format_of(src, raw, i)
        raws.append(raw)
        formats.append(fmt)
        reports.append(SourceReport(i, src.path, fmt, detected, FORMATS[fmt].kind, weight=src.weight))
    kind = choose_kind(spec, formats, kinds, [s.kind == "file" for s in spec.data.sources])
    parts = []
    for i, (raw, fmt, rep) in enumerate(zip(raws, formats, reports)):
        rep.kind = kind
        if raw.rows is None:  # streamed
            rep.rows = rep.ok = rep.train_rows = rep.eval_rows = None
            rep.note = "streamed: rows and bad rows are not counted ahead of training"
            parts.append((raw, []))
            continue
        rows = normalize_rows(raw, fmt, kind, rep)
        rep.rows = len(raw.rows) + len(raw.bad)
        if raw.test is not None and spec.data.eval_fraction > 0:
            test_rep = SourceReport(i, raw.test.label, fmt, "", FORMATS[fmt].kind)
            eval_rows = normalize_rows(raw.test, fmt, kind, test_rep) if raw.test.rows is not None else []
            train_rows = rows
            rep.eval_from = f"{raw.test.label} ({len(eval_rows)} rows, {test_rep.bad} bad)"
        else:
            train_rows, eval_rows = _split_eval(rows, spec.data.eval_fraction, spec.data.seed + i)
            if eval_rows:
                rep.eval_from = f"{spec.data.eval_fraction:.0%} of the rows, seed {spec.data.seed + i}"
        if not train_rows:
            top = ", ".join(f"{r} ({n})" for r, n in sorted(rep.reasons.items(), key=lambda kv: -kv[1])[:3])
            raise DataError(f"data.sources.{i}", f"no usable rows in '{raw.label}' as {kind}"
                            + (f": {rep.bad} bad rows, e.g. {top}" if rep.bad else ": it is empty"))
        rep.ok, rep.train_rows, rep.eval_rows = len(train_rows) + len(eval_rows), len(train_rows), len(eval_rows)
        parts.append((train_rows, eval_rows))
    return parts, kind, reports, raws, formats


def _dataset(rows: list[dict], kind: str, with_answer: bool, source: int | None):
    from datasets import Dataset

    features = features_for(kind, with_answer, source is not None)
    cols = list(features)
    data = {c: [r.get(c) for r in rows] for c in cols if c != SOURCE_COLUMN}
    if source is not None:
        data[SOURCE_COLUMN] = [source] * len(rows)
    return Dataset.from_dict(data, features=features)


def mix(spec: RunSpec, kinds: tuple[str, ...], keep_source: bool = False) -> DataBundle:
    """build(), optionally keeping a _source column (the preview's view of the blend)."""
    import datasets

    parts, kind, reports, raws, formats = load_sources(spec, kinds)
    with_answer = kind == "prompt" or any(
        r.get("answer") is not None for rows, ev in parts if isinstance(rows, list) for r in rows[:1000])
    train_sets, eval_sets = [], []
    for i, ((rows, eval_rows), raw, fmt) in enumerate(zip(parts, raws, formats)):
        src = i if keep_source else None
        if isinstance(rows, list):
            train_sets.append(_dataset(rows, kind, with_answer, src))
        else:
            stream = _streamed(raw, fmt, kind, features_for(kind, with_answer))
            if keep_source:
                stream = stream.map(lambda b, i=i: {SOURCE_COLUMN: [i] * len(next(iter(b.values())))},
                                    batched=True, features=features_for(kind, with_answer, True))
            train_sets.append(stream)
        if eval_rows:
            eval_sets.append(_dataset(eval_rows, kind, with_answer, src))
    if any(not isinstance(d, datasets.Dataset) for d in train_sets):
        train_sets = [d.to_iterable_dataset() if isinstance(d, datasets.Dataset) else d for d in train_sets]
    d = spec.data
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
    evals = datasets.concatenate_datasets(eval_sets) if eval_sets else None
    return DataBundle(train=train, eval=evals, kind=kind, report=reports, parts=train_sets)


def build(spec: RunSpec, kinds: tuple[str, ...]) -> DataBundle:
    """The training and eval datasets for a run, normalised to one of `kinds` (the
    method's data_kinds, preferred first). Raises DataError naming the source at fault."""
    return mix(spec, kinds, keep_source=False)


def bad_reason_counts(reports: list[SourceReport]) -> Counter:
    total: Counter = Counter()
    for r in reports:
        total.update(r.reasons)
    return total
