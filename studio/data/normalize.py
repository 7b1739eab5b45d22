"""Rows of any known format -> the exact row shape trl expects for a data kind.

`normalize(row, fmt)` gives the format's own kind; `convert(row, from_kind, to_kind)`
turns it into another kind (preference -> conversation via the chosen answer, ...).
Both answer (result, None) or (None, reason): a row that does not fit is reported with a
short, countable reason, never raised, so one bad line cannot stop a run.
"""
from __future__ import annotations

import re

from studio.data.formats import FORMATS, MESSAGE_KEYS, PROMPT_KEYS, maybe_json

ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant",
                "function": "tool", "observation": "tool", "function_response": "tool",
                "ipython": "tool", "developer": "system", "chatgpt": "assistant"}
MAX_ROW_CHARS = 4_000_000  # a row this long is almost certainly a broken export


class Bad(Exception):
    """A row that does not fit; its message is the reason shown to the person."""


def normalize(row, fmt: str) -> tuple[dict | None, str | None]:
    """One raw row -> (normalised row of FORMATS[fmt].kind, None) or (None, reason)."""
    if fmt not in FORMATS:
        return None, f"unknown format '{fmt}'"
    if not isinstance(row, dict):
        return None, f"row is {type(row).__name__}, not an object"
    try:
        out = _NORMALIZERS[fmt](row)
        _check_size(out)
        return out, None
    except Bad as exc:
        return None, str(exc)
    except RecursionError:
        return None, "row is nested too deeply"


def convert(row: dict, from_kind: str, to_kind: str) -> tuple[list[dict], str | None]:
    """A normalised row of one kind -> rows of another (preference -> unpaired gives
    two). Returns ([], reason) when this row cannot serve the target kind."""
    if from_kind == to_kind:
        return [row], None
    fn = _CONVERTERS.get((from_kind, to_kind))
    if fn is None:
        return [], f"{from_kind} rows cannot be used as {to_kind}"
    try:
        return fn(row), None
    except Bad as exc:
        return [], str(exc)


# -- messages -------------------------------------------------------------------------


def _content(value, where: str) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text parts
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type", "text") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            value = "".join(parts)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Bad(f"{where} is {type(value).__name__}, not text")
    return value


def _turn(role, content, where: str) -> dict:
    if not isinstance(role, str):
        raise Bad(f"{where} has no role")
    role = ROLE_ALIASES.get(role.strip().lower(), role.strip().lower())
    if role not in ROLES:
        raise Bad(f"{where} has unknown role '{role[:20]}'")
    text = _content(content, f"{where} content")
    if not text.strip() and role != "system":
        raise Bad(f"{where} is empty")
    return {"role": role, "content": text}


def messages_from(value, name: str, role_key="role", content_key="content") -> list[dict]:
    value = maybe_json(value)
    if not isinstance(value, list):
        raise Bad(f"'{name}' is {type(value).__name__}, not a list of turns")
    if not value:
        raise Bad(f"'{name}' is empty")
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise Bad(f"'{name}' turn {i} is not an object")
        if content_key not in turn:
            raise Bad(f"'{name}' turn {i} has no '{content_key}'")
        out.append(_turn(turn.get(role_key), turn[content_key], f"'{name}' turn {i}"))
    return out


def as_messages(value, name: str, default_role: str) -> list[dict]:
    """A string (one turn of default_role) or a message list."""
    value = maybe_json(value)
    if isinstance(value, list):
        return messages_from(value, name)
    return [_turn(default_role, _required_text(value, name), f"'{name}'")]


def _required_text(value, name: str) -> str:
    if value is None:
        raise Bad(f"missing field '{name}'")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Bad(f"'{name}' is {type(value).__name__}, not text")
    if not value.strip():
        raise Bad(f"'{name}' is empty")
    return value


def _need(row: dict, name: str):
    if name not in row or row[name] is None:
        raise Bad(f"missing field '{name}'")
    return row[name]


def _conversation(messages: list[dict], answer=None) -> dict:
    if not any(m["role"] == "assistant" for m in messages):
        raise Bad("no assistant turn to learn from")
    return {"messages": messages, "answer": _answer(answer)}


def _answer(value) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value if isinstance(value, str) else None


def _check_size(row: dict) -> None:
    total = 0
    for value in row.values():
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            total += sum(len(m["content"]) for m in value)
    if total > MAX_ROW_CHARS:
        raise Bad(f"row is {total / 1e6:.1f}M characters, over the {MAX_ROW_CHARS // 1_000_000}M limit")


# -- one function per format ----------------------------------------------------------------


def _messages(row):
    key = next((k for k in MESSAGE_KEYS if k in row), "messages")
    return _conversation(messages_from(_need(row, key), key), row.get("answer"))


def _sharegpt(row):
    key = next((k for k in MESSAGE_KEYS if k in row), "conversations")
    msgs = messages_from(_need(row, key), key, role_key="from", content_key="value")
    if isinstance(row.get("system"), str) and row["system"].strip() and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": row["system"]})
    return _conversation(msgs)


_GLAIVE_TURN = re.compile(r"(?:^|\n)\s*(SYSTEM|USER|ASSISTANT|FUNCTION RESPONSE):[ \t]?")
_GLAIVE_ROLES = {"SYSTEM": "system", "USER": "user", "ASSISTANT": "assistant", "FUNCTION RESPONSE": "tool"}


def _glaive(row):
    text = row.get("chat", row.get("text"))
    chat = _required_text(text, "chat" if "chat" in row else "text")
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise Bad(f"'system' is {type(system).__name__}, not text")
    msgs = []
    for source in (system or "", chat):
        pieces = _GLAIVE_TURN.split(source)
        for marker, body in zip(pieces[1::2], pieces[2::2]):
            body = body.replace("<|endoftext|>", "").strip()
            if body:
                msgs.append({"role": _GLAIVE_ROLES[marker], "content": body})
    if not msgs:
        raise Bad("no SYSTEM:/USER:/ASSISTANT: turns found")
    return _conversation(msgs)


def _instruction(row, answer_key: str):
    instruction = _required_text(row.get("instruction"), "instruction")
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise Bad(f"'input' is {type(extra).__name__}, not text")
    user = instruction + ("\n\n" + extra if extra and extra.strip() else "")
    msgs = [{"role": "user", "content": user},
            {"role": "assistant", "content": _required_text(row.get(answer_key), answer_key)}]
    if isinstance(row.get("system"), str) and row["system"].strip():
        msgs.insert(0, {"role": "system", "content": row["system"]})
    return _conversation(msgs)


def _prompt_completion(row):
    prompt = as_messages(_need(row, "prompt"), "prompt", "user")
    completion = as_messages(_need(row, "completion"), "completion", "assistant")
    return _conversation(prompt + completion, row.get("answer"))


def _split_shared(chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list]:
    """Full conversations -> (shared prompt turns, chosen rest, rejected rest)."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    # the answers start at the first assistant turn after the shared prefix
    while n > 0 and chosen[n - 1]["role"] == "assistant" and chosen[n]["role"] == "assistant":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _pair(prompt: list[dict], chosen: list[dict], rejected: list[dict], answer=None) -> dict:
    if not prompt:
        raise Bad("chosen and rejected share no prompt")
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if not turns or turns[0]["role"] != "assistant":
            raise Bad(f"'{name}' has no assistant answer after the prompt")
    if prompt[-1]["role"] == "assistant":
        raise Bad("the prompt ends with an assistant turn")
    if chosen == rejected:
        raise Bad("chosen and rejected are the same answer")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "answer": _answer(answer)}


def _preference(row):
    prompt = as_messages(_need(row, "prompt"), "prompt", "user")
    chosen = as_messages(_need(row, "chosen"), "chosen", "assistant")
    rejected = as_messages(_need(row, "rejected"), "rejected", "assistant")
    # some exports repeat the prompt at the start of each answer conversation
    n = len(prompt)
    if chosen[:n] == prompt and len(chosen) > n:
        chosen = chosen[n:]
    if rejected[:n] == prompt and len(rejected) > n:
        rejected = rejected[n:]
    return _pair(prompt, chosen, rejected, row.get("answer"))


def _preference_conversations(row):
    chosen = messages_from(_need(row, "chosen"), "chosen")
    rejected = messages_from(_need(row, "rejected"), "rejected")
    return _pair(*_split_shared(chosen, rejected))


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def _hh_turns(text: str) -> list[dict]:
    pieces = _HH_TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    role = {"Human": "user", "Assistant": "assistant"}
    return [{"role": role[m], "content": b.strip()} for m, b in zip(pieces[1::2], pieces[2::2])]


def _preference_text(row):
    chosen = _required_text(row.get("chosen"), "chosen")
    rejected = _required_text(row.get("rejected"), "rejected")
    c_turns, r_turns = _hh_turns(chosen), _hh_turns(rejected)
    if c_turns and r_turns:
        if any(not t["content"] for t in c_turns[:-1] + r_turns[:-1]):
            raise Bad("a Human/Assistant turn is empty")
        return _pair(*_split_shared(c_turns, r_turns))
    # plain texts: the shared prefix (cut at a word boundary) is the prompt
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    while n > 0 and not chosen[n - 1].isspace():
        n -= 1
    prompt = chosen[:n].strip()
    if not prompt:
        raise Bad("chosen and rejected share no prompt")
    return _pair([{"role": "user", "content": prompt}],
                 [{"role": "assistant", "content": _required_text(chosen[n:].strip(), "chosen")}],
                 [{"role": "assistant", "content": _required_text(rejected[n:].strip(), "rejected")}])


_TRUE = {"true", "1", "yes", "good", "up", "+", "positive", "desirable"}
_FALSE = {"false", "0", "no", "bad", "down", "-", "negative", "undesirable"}


def _label(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if value is None:
        raise Bad("missing field 'label'")
    raise Bad("'label' is not true/false")


def _kto(row):
    prompt = as_messages(_need(row, "prompt"), "prompt", "user")
    completion = as_messages(_need(row, "completion"), "completion", "assistant")
    if completion[0]["role"] != "assistant":
        raise Bad("'completion' does not start with an assistant turn")
    return {"prompt": prompt, "completion": completion, "label": _label(row.get("label")),
            "answer": _answer(row.get("answer"))}


def _prompt(row):
    key = next((k for k in PROMPT_KEYS if k in row), "prompt")
    prompt = as_messages(_need(row, key), key, "user")
    if prompt[-1]["role"] == "assistant":
        raise Bad("the prompt ends with an assistant turn")
    answer = row.get("answer")
    if answer is not None and _answer(answer) is None:
        raise Bad(f"'answer' is {type(answer).__name__}, not text")
    return {"prompt": prompt, "answer": _answer(answer)}


def _text(row):
    return {"text": _required_text(row.get("text"), "text")}


_NORMALIZERS = {
    "messages": _messages, "sharegpt": _sharegpt, "glaive": _glaive,
    "alpaca": lambda r: _instruction(r, "output"),
    "instruction_response": lambda r: _instruction(r, "response"),
    "prompt_completion": _prompt_completion, "preference": _preference,
    "preference_conversations": _preference_conversations, "preference_text": _preference_text,
    "kto": _kto, "prompt": _prompt, "text": _text, "document": _text,
}


# -- kind conversions ---------------------------------------------------------------


def _conversation_to_prompt(row):
    msgs = row["messages"]
    last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    if last == 0:
        raise Bad("no prompt before the assistant turn")
    answer = row.get("answer")
    return [{"prompt": msgs[:last], "answer": answer if answer is not None else msgs[last]["content"]}]


def _preference_to_conversation(row):
    return [{"messages": row["prompt"] + row["chosen"], "answer": row.get("answer")}]


def _preference_to_unpaired(row):
    return [{"prompt": row["prompt"], "completion": row["chosen"], "label": True, "answer": row.get("answer")},
            {"prompt": row["prompt"], "completion": row["rejected"], "label": False, "answer": row.get("answer")}]


def _preference_to_prompt(row):
    answer = row.get("answer")
    return [{"prompt": row["prompt"], "answer": answer if answer is not None else row["chosen"][0]["content"]}]


def _unpaired_to_conversation(row):
    if not row["label"]:
        raise Bad("labelled bad: not an example to imitate")
    return [{"messages": row["prompt"] + row["completion"], "answer": row.get("answer")}]


def _unpaired_to_prompt(row):
    answer = row.get("answer")
    if answer is None and row["label"]:
        answer = row["completion"][0]["content"]
    return [{"prompt": row["prompt"], "answer": answer}]


def _prompt_to_conversation(row):
    if not row.get("answer") or not row["answer"].strip():
        raise Bad("no answer to learn from")
    return [{"messages": row["prompt"] + [{"role": "assistant", "content": row["answer"]}],
             "answer": row["answer"]}]


_CONVERTERS = {
    ("conversation", "prompt"): _conversation_to_prompt,
    ("preference", "conversation"): _preference_to_conversation,
    ("preference", "unpaired"): _preference_to_unpaired,
    ("preference", "prompt"): _preference_to_prompt,
    ("unpaired", "conversation"): _unpaired_to_conversation,
    ("unpaired", "prompt"): _unpaired_to_prompt,
    ("prompt", "conversation"): _prompt_to_conversation,
}
