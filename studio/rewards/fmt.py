"""Format checks: reasoning then an answer, JSON that parses or fits a schema, a tool
call whose name and arguments match the reference (Glaive's `<functioncall> {...}` or
ChatML's `<tool_call>{...}</tool_call>`, as the Data tab reads them)."""
from __future__ import annotations

import json
import re

from studio.rewards.text import completion_text, json_in, references

_THINK = re.compile(r"\s*<think>(.+?)</think>\s*(\S.*)", re.S)


def think_format(completions: list, answer: list | None = None, **kw) -> list[float]:
    """1.0 for `<think>reasoning</think>` followed by a non-empty answer, else 0.0."""
    return [1.0 if _THINK.fullmatch(completion_text(c)) else 0.0 for c in completions]


def json_valid(completions: list, answer: list | None = None, object_only: bool = True, **kw) -> list[float]:
    """1.0 when the reply's answer is JSON that parses (an object, unless object_only=false)."""
    out = []
    for c in completions:
        ok, value = json_in(completion_text(c))
        out.append(1.0 if ok and (isinstance(value, dict) or not object_only) else 0.0)
    return out


def check_schema(schema) -> object:
    """A jsonschema validator for `schema`, or a ValueError saying what is wrong with it."""
    import jsonschema

    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ValueError(f"json_schema: schema is not JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise ValueError("json_schema needs schema={...}, a JSON Schema object")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"json_schema: the schema is not valid: {exc.message}") from None
    return cls(schema)


def json_schema(completions: list, answer: list | None = None, schema=None, **kw) -> list[float]:
    """1.0 when the reply's JSON validates against `schema`, else 0.0."""
    validator = check_schema(schema)
    out = []
    for c in completions:
        ok, value = json_in(completion_text(c))
        out.append(1.0 if ok and validator.is_valid(value) else 0.0)
    return out


def json_match(completions: list, answer: list | None = None, partial: bool = True, **kw) -> list[float]:
    """How much of the reference JSON object the reply's JSON gets right: the share of the
    reference's fields with equal values (partial=false: 1.0 only when all are, and no
    extra fields). 0.0 when the reply is not a JSON object."""
    out = []
    for c, want in zip(completions, references("json_match", completions, answer)):
        ok, got = json_in(completion_text(c))
        try:
            ref = json.loads(want) if isinstance(want, str) else want
        except ValueError:
            ref = None
        if not ok or not isinstance(got, dict) or not isinstance(ref, dict) or not ref:
            out.append(0.0)
            continue
        right = sum(1 for k, v in ref.items() if k in got and got[k] == v)
        out.append(right / len(ref) if partial else float(right == len(ref) and set(got) == set(ref)))
    return out


_GLAIVE = re.compile(r"<functioncall>\s*(\{.*\})", re.S)
_CHATML = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def parse_tool_call(text: str) -> tuple[str, dict] | None:
    """(name, arguments) of the first tool call in the text, or None. Glaive writes the
    arguments as a JSON string in single quotes: '{"a": 1}'."""
    if not text:
        return None
    found = _CHATML.search(text) or _GLAIVE.search(text)
    body = found.group(1) if found else text.strip()
    body = re.sub(r"'(\{.*?\})'", lambda m: json.dumps(m.group(1)), body, flags=re.S)
    try:
        call = json.loads(body)
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return (call["name"], args) if isinstance(args, dict) else None


def tool_call(completions: list, answer: list | None = None, partial: bool = True, **kw) -> list[float]:
    """1.0 when the reply calls the reference's tool with equal arguments; 0.5 (partial)
    for the right tool with other arguments; 0.0 otherwise or when it does not parse."""
    out = []
    for c, want in zip(completions, references("tool_call", completions, answer)):
        got, ref = parse_tool_call(completion_text(c)), parse_tool_call(want or "")
        if got is None or ref is None or got[0] != ref[0]:
            out.append(0.0)
        else:
            out.append(1.0 if got[1] == ref[1] else (0.5 if partial else 0.0))
    return out
