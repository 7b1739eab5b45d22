"""method.reward -> configured reward functions.

Text form (what the spec stores): entries separated by commas, each
`[weight*]name[:arg=value,arg=value]`, e.g. `exact_match, 0.5*regex:pattern="^\\d+$",flags=i`
or `model:runs/rm-1`; `name:value` sets the reward's first argument. Quote a value that
holds commas, brackets or quotes with "..." (a quote inside doubled: ""). JSON objects
(schema={...}) may be written as they are. YAML list form, turned into the text form when
the spec is read: [{name: regex, weight: 0.5, args: {pattern: '^\\d+$'}}].
"""
from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field

_ENTRY = re.compile(r"\s*(?:([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*)?([A-Za-z_]\w*)\s*(?::(.*))?", re.S)
_ARG = re.compile(r"\s*([A-Za-z_]\w*)\s*=(.*)", re.S)
_PLAIN = re.compile(r"[\w.+\-/~^$\\|?]*")


@dataclass
class Entry:
    """One configured reward: its registry name, weight, arguments and metric name."""

    name: str
    weight: float = 1.0
    args: dict = field(default_factory=dict)
    metric: str = ""


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside quotes and brackets."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == sep and not quoted and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('""', '"')
    return raw


def parse(text) -> list[Entry]:
    """The entries of method.reward (text or list form), arguments still as written."""
    from studio.rewards.registry import first_param

    if isinstance(text, list):
        return from_list(text)
    entries: list[Entry] = []
    for segment in split_top(text or ""):
        arg = _ARG.fullmatch(segment)
        if arg and entries:  # key=value after an entry: that entry's next argument
            entries[-1].args[arg.group(1)] = _unquote(arg.group(2))
            continue
        head = _ENTRY.fullmatch(segment)
        if not head:
            raise ValueError(f"method.reward: cannot read {segment.strip()!r}; write name, weight*name or "
                             "name:arg=value (quote values with commas: \"a,b\")")
        weight, name, rest = head.groups()
        entry = Entry(name, float(weight) if weight else 1.0)
        if rest is not None and rest.strip():
            pair = _ARG.fullmatch(rest)
            if pair and (name not in ("model", "file") or pair.group(1) in _param_names(name)):
                entry.args[pair.group(1)] = _unquote(pair.group(2))
            else:
                entry.args[first_param(name) or "value"] = _unquote(rest)
        entries.append(entry)
    return name_metrics(entries)


def _param_names(name: str) -> set[str]:
    from studio.rewards.registry import params

    return set(params(name))


def from_list(items: list) -> list[Entry]:
    entries = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            entries += parse(item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"method.reward.{i}: each entry is {{name, weight, args}}, e.g. {{name: regex, "
                             "args: {pattern: '^\\d+$'}}")
        extra = set(item) - {"name", "weight", "args"}
        if extra:
            raise ValueError(f"method.reward.{i}: unknown key {sorted(extra)[0]!r}; use name, weight, args")
        args = item.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError(f"method.reward.{i}.args: a mapping of argument: value")
        try:
            weight = float(item.get("weight", 1.0))
        except (TypeError, ValueError):
            raise ValueError(f"method.reward.{i}.weight: a number, e.g. 0.5") from None
        entries.append(Entry(item["name"], weight, dict(args)))
    return name_metrics(entries)


def name_metrics(entries: list[Entry]) -> list[Entry]:
    """trl logs rewards/<name>/mean: the second regex becomes regex_2, and so on."""
    seen: dict[str, int] = {}
    for e in entries:
        base = "reward_model" if e.name == "model" else e.name
        seen[base] = seen.get(base, 0) + 1
        e.metric = base if seen[base] == 1 else f"{base}_{seen[base]}"
    return entries


def _format_value(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if _PLAIN.fullmatch(text) and text else '"' + text.replace('"', '""') + '"'


def to_text(entries) -> str:
    """The text form of a list of entries (or the YAML list form)."""
    if isinstance(entries, list) and entries and not isinstance(entries[0], Entry):
        entries = from_list(entries)
    parts = []
    for e in entries:
        head = e.name if e.weight == 1.0 else f"{e.weight:g}*{e.name}"
        if e.name == "model" and set(e.args) == {"path"}:
            parts.append(f"{head}:{e.args['path']}")  # the form a reward run is named by
            continue
        args = ",".join(f"{k}={_format_value(v)}" for k, v in e.args.items())
        parts.append(f"{head}:{args}" if args else head)
    return ", ".join(parts)


def bind_args(name: str, fn, raw: dict) -> dict:
    """Arguments as written -> typed values, by the function's defaults; a ValueError
    naming the argument otherwise."""
    sig = inspect.signature(fn)
    known = {p.name: p for p in sig.parameters.values()
             if p.kind is p.KEYWORD_ONLY or (p.default is not p.empty and p.name != "answer")}
    out = {}
    for key, value in raw.items():
        if key not in known:
            choices = ", ".join(known) or "none"
            raise ValueError(f"{name} has no argument {key!r} (its arguments: {choices})")
        out[key] = _typed(name, key, value, known[key].default)
    return out


def _typed(name, key, value, default):
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
                return str(value).lower() in ("true", "yes", "1")
            raise ValueError
        if isinstance(default, int):
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if isinstance(default, float):
            return float(value)
        if default is None and isinstance(value, str) and value.strip()[:1] in "{[":
            return json.loads(value)
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise ValueError(f"{name}: argument {key}={value!r} is not a {kind} (default {default!r})") from None
    return value
