"""The row formats people bring, how to recognise them, and which data kind each one is.

A format is what a file looks like (Alpaca, ShareGPT, HH-RLHF ...); a kind is what a
method consumes (see studio.methods: text / conversation / preference / unpaired /
prompt). Detection looks at keys and value shapes of a sample of rows and never raises:
whatever it is handed (None, numbers, nested junk) it answers with a FormatGuess.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

KINDS = ("text", "conversation", "preference", "unpaired", "prompt")


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # the kind its rows normalise to
    title: str  # how the UI and error messages call it ("this file is ...")
    fields: str  # the columns it reads, for the person


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("messages", "conversation", "chat conversations (OpenAI role/content messages)",
               "messages (or conversations): [{role, content}, ...]"),
        Format("sharegpt", "conversation", "ShareGPT conversations (from/value turns)",
               "conversations: [{from: human|gpt|system, value}, ...]"),
        Format("glaive", "conversation", "Glaive function-calling transcripts",
               "system + chat with SYSTEM:/USER:/ASSISTANT:/FUNCTION RESPONSE: turns"),
        Format("alpaca", "conversation", "Alpaca instructions (instruction/input/output)",
               "instruction, input (optional), output"),
        Format("instruction_response", "conversation", "instruction/response pairs",
               "instruction, response"),
        Format("prompt_completion", "conversation", "prompt/completion pairs",
               "prompt, completion"),
        Format("preference", "preference", "preference pairs (prompt/chosen/rejected)",
               "prompt, chosen, rejected"),
        Format("preference_conversations", "preference",
               "preference pairs given as two full conversations (chosen/rejected)",
               "chosen, rejected: message lists sharing the prompt turns"),
        Format("preference_text", "preference",
               "preference pairs given as two full texts with a shared prompt (HH-RLHF style)",
               "chosen, rejected: '\\n\\nHuman: ... \\n\\nAssistant: ...' texts"),
        Format("kto", "unpaired", "completions labelled good/bad (prompt/completion/label)",
               "prompt, completion, label (true/false)"),
        Format("prompt", "prompt", "prompts (prompt with an optional answer)",
               "prompt (or question), answer (optional)"),
        Format("text", "text", "raw text", "text (or one document per line of a .txt file)"),
        Format("document", "text", "raw text (one document per file)", "the whole file"),
    ]
}

# What each kind means to a person, for "X needs ...; this file is ..." messages.
KIND_NEEDS = {
    "text": "raw text (a 'text' column or a .txt file)",
    "conversation": "conversations (messages) or instruction/answer pairs",
    "preference": "preference pairs (prompt/chosen/rejected)",
    "unpaired": "completions labelled good/bad (prompt/completion/label)",
    "prompt": "prompts (a 'prompt' column, optionally with 'answer')",
}

# Which other kinds a kind can be turned into (studio.data.normalize.convert does it).
CONVERSIONS: dict[str, tuple[str, ...]] = {
    "text": (),
    "conversation": ("prompt",),  # last assistant turn becomes the answer
    "preference": ("conversation", "unpaired", "prompt"),  # chosen answer / both labelled
    "unpaired": ("conversation", "prompt"),  # only the rows labelled good
    "prompt": ("conversation",),  # prompt + answer as one exchange (rows with an answer)
}

MESSAGE_KEYS = ("messages", "conversations", "conversation")
PROMPT_KEYS = ("prompt", "question")


def kinds_for(fmt: str) -> tuple[str, ...]:
    """The kinds a format can serve: its own first, then what it converts to."""
    kind = FORMATS[fmt].kind
    return (kind,) + CONVERSIONS[kind]


@dataclass
class FormatGuess:
    name: str  # a key of FORMATS, or "unknown"
    kind: str | None
    matched: int = 0  # sampled rows that fit the format
    sampled: int = 0
    columns: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def confidence(self) -> float:
        return self.matched / self.sampled if self.sampled else 0.0

    def to_dict(self) -> dict:
        return {"format": self.name, "kind": self.kind, "matched": self.matched,
                "sampled": self.sampled, "confidence": round(self.confidence, 3),
                "columns": self.columns, "note": self.note}


def maybe_json(value):
    """CSV and some exports store message lists as JSON text; read it back."""
    if isinstance(value, str) and value[:1] in "[{" and len(value) < 5_000_000:
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _turns(value, *keys) -> bool:
    value = maybe_json(value)
    return (isinstance(value, list) and bool(value) and isinstance(value[0], dict)
            and all(k in value[0] for k in keys))


def _is_text(value) -> bool:
    return isinstance(value, str)


def _glaive_text(value) -> bool:
    return isinstance(value, str) and "USER:" in value and "ASSISTANT:" in value


def row_format(row) -> str | None:
    """The format one row fits best, by key and value shape; None when nothing fits."""
    if not isinstance(row, dict):
        return None
    keys = set(row)
    for key in MESSAGE_KEYS:
        if key in keys:
            if _turns(row[key], "from", "value"):
                return "sharegpt"
            if _turns(row[key], "role"):
                return "messages"
    if "chat" in keys and _glaive_text(row.get("chat")):
        return "glaive"
    if {"chosen", "rejected"} <= keys:
        if "prompt" in keys:
            return "preference"
        if _turns(row["chosen"], "role"):
            return "preference_conversations"
        return "preference_text"
    if {"prompt", "completion", "label"} <= keys:
        return "kto"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"instruction", "response"} <= keys:
        return "instruction_response"
    if keys & set(PROMPT_KEYS):
        return "prompt"
    if "text" in keys:
        if _glaive_text(row["text"]) and "\nASSISTANT:" in row["text"]:
            return "glaive"
        return "text"
    return None


def detect_format(rows, sample: int = 200) -> FormatGuess:
    """Guess the format from up to `sample` rows: the one most rows fit."""
    try:
        rows = list(rows[:sample]) if isinstance(rows, (list, tuple)) else []
    except Exception:  # noqa: BLE001 - detection must answer, whatever it was handed
        rows = []
    columns: list[str] = []
    votes: dict[str, int] = {}
    for row in rows:
        if isinstance(row, dict):
            columns.extend(str(k) for k in row if str(k) not in columns)
        name = row_format(row)
        if name:
            votes[name] = votes.get(name, 0) + 1
    if not votes:
        note = (f"columns {', '.join(columns[:8])} match no known format" if columns
                else "no readable rows")
        return FormatGuess("unknown", None, 0, len(rows), columns[:50],
                           note + f"; set the format to one of: {', '.join(FORMATS)}")
    best = max(votes, key=votes.get)
    note = ""
    if len(votes) > 1:
        others = ", ".join(f"{k} ({v})" for k, v in votes.items() if k != best)
        note = f"some rows look like another format: {others}"
    return FormatGuess(best, FORMATS[best].kind, votes[best], len(rows), columns[:50], note)
