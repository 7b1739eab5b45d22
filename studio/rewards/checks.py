"""Validation of method.reward before a run starts: names, arguments, regexes, schemas,
user files (imported and called on two sample replies), and the data column a reward
needs. Each problem names its field."""
from __future__ import annotations

import json
from pathlib import Path

from studio.rewards.config import parse
from studio.rewards.registry import FILE, LIBRARY, MODEL, configure

SAMPLE = ["4", "<think>2 + 2</think> 4"]


def reward_problems(spec_reward) -> list[tuple[str, str]]:
    """(field, message) for each problem with method.reward; [] when it is usable."""
    try:
        entries = parse(spec_reward)
    except ValueError as exc:
        return [("method.reward", str(exc).removeprefix("method.reward: "))]
    if not entries:
        return [("method.reward", "choose a reward (e.g. exact_match) or model:<reward run dir>")]
    problems = []
    for i, entry in enumerate(entries):
        lead = "" if len(entries) == 1 else f"entry {i + 1} ({entry.name}): "
        try:
            fn = configure(entry, load_models=False)
            if entry.name == FILE:
                fn(SAMPLE, answer=["4", "4"], prompts=["2 + 2 =", "2 + 2 ="])
        except (ValueError, PermissionError) as exc:
            message = str(exc).removeprefix("method.reward: ")
            if entry.name not in LIBRARY and entry.name not in (MODEL, FILE):
                message += "; several are summed with commas, e.g. exact_match, closeness"
            problems.append(("method.reward", lead + message))
    return problems


def needs_answer(spec_reward) -> list[str]:
    """The rewards in method.reward that read the data's answer column."""
    try:
        entries = parse(spec_reward)
    except ValueError:
        return []
    out = []
    for e in entries:
        if e.name in LIBRARY and LIBRARY[e.name][2] and not (e.name == "contains" and e.args.get("text")):
            out.append(e.metric)
    return out


def first_row(path: str) -> dict | None:
    """The first record of a local .jsonl/.json file (cheap: one line), else None."""
    from studio.data.errors import DataError
    from studio.data.sources import resolve_path

    try:
        file = Path(resolve_path(path, "data"))
    except (DataError, OSError, ValueError):
        return None
    if not file.is_file() or file.suffix not in (".jsonl", ".json"):
        return None
    try:
        with open(file, encoding="utf-8") as f:
            if file.suffix == ".jsonl":
                line = next((ln for ln in f if ln.strip()), "")
                return json.loads(line) if line else None
            if file.stat().st_size > 5 << 20:
                return None
            data = json.load(f)
            return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
    except (ValueError, OSError):
        return None


def data_problems(spec) -> list[tuple[str, str]]:
    """A local data file without the "answer" column a chosen reward reads."""
    users = needs_answer(spec.method.reward)
    if not users:
        return []
    problems = []
    for i, source in enumerate(spec.data.sources):
        if source.kind != "file":
            continue  # a hub dataset is checked when it is read
        row = first_row(source.path)
        if row is not None and row.get("answer") is None:
            problems.append((f"data.sources.{i}.path",
                             f"{', '.join(users)} reads the reference from an 'answer' column, which "
                             f"{Path(source.path).name} does not have; add it, or choose rewards that need none"))
    return problems
