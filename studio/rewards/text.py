"""Reading completions and references: the text of a completion, its answer part, the
numbers and JSON in it. Shared by every reward in the library."""
from __future__ import annotations

import json
import re

_THINK_END = re.compile(r"</think>", re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)(?:```|$)", re.S)
NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d+)*|\.\d+)(?:[eE][-+]?\d+)?")


def completion_text(completion) -> str:
    """The text of one completion: a string, or the contents of a list of messages."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts = []
    for message in completion:
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, list):  # multimodal-style [{"type": "text", "text": ...}]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(content or "")
    return "".join(parts)


def answer_part(text: str) -> str:
    """What the reply answers, without its reasoning: the text after the last </think>,
    inside <answer>...</answer> when present, stripped."""
    pieces = _THINK_END.split(text)
    tail = pieces[-1]
    tagged = _ANSWER_TAG.search(tail)
    return (tagged.group(1) if tagged else tail).strip()


def normalise(text: str) -> str:
    """Lower case, single spaces, no surrounding quotes or final full stop: "The  Cat." == "the cat"."""
    text = " ".join(str(text).lower().split())
    return text.strip(" \"'`").rstrip(".!;").strip()


def last_number(text: str) -> float | None:
    """The last number in the text (commas as thousands separators), or None."""
    found = NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1]
    raw = raw.replace(",", "") if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", raw) else raw.replace(",", ".")
    try:
        return float(raw)
    except ValueError:
        return None


def json_in(text: str):
    """(ok, value): the JSON the reply gives: its whole answer part, or the first fenced
    block, or the outermost {...}. ok is False when none of those parses."""
    body = answer_part(text)
    candidates = [body]
    fenced = _FENCE.search(body)
    if fenced:
        candidates.append(fenced.group(1))
    start, end = body.find("{"), body.rfind("}")
    if 0 <= start < end:
        candidates.append(body[start:end + 1])
    for candidate in candidates:
        try:
            return True, json.loads(candidate)
        except (ValueError, TypeError):
            continue
    return False, None


def code_in(text: str) -> str:
    """The Python a reply gives: its first fenced block, else the whole answer part."""
    body = answer_part(text)
    fenced = _FENCE.search(body)
    return fenced.group(1) if fenced else body


_NO_ANSWER_FIX = ("(the reference each reply is checked against); add one, or choose a reward that "
                  "needs none (think_format, json_valid, json_schema, regex, target_length, repetition)")


def references(name: str, completions: list, answer: list | None, fix: str = _NO_ANSWER_FIX) -> list:
    """The answer column, one per completion, or a clear error naming the column (and `fix`:
    what to do instead, which differs between reward families)."""
    if answer is None:
        raise ValueError(f"reward {name} needs an 'answer' column in the prompt data {fix}")
    if len(answer) != len(completions):
        raise ValueError(f"{name} got {len(completions)} completions but {len(answer)} answers")
    return list(answer)
