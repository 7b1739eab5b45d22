"""The shipped arithmetic task's rewards (the first presets): whole numbers in the reply."""
from __future__ import annotations

import re

from studio.rewards.text import completion_text, references
from studio.tasks import extract_answer

LENGTH_PENALTY_PER_CHAR = 0.01
_JUST_A_NUMBER = re.compile(r"\s*-?\d+\s*")


def _answer_pairs(name: str, completions: list, answer: list | None) -> list[tuple[int | None, int | None]]:
    """(number in the reply, number in the answer column) per completion; None where absent."""
    answer = references(name, completions, answer, fix=(
        "(e.g. assets/data/arith_prompts_train.jsonl); set method.reward to a preset "
        "that needs no answer (format, length_penalty) or to model:<reward model dir>"))

    def number(text):
        found = extract_answer(text)
        return int(found) if found is not None else None

    return [(number(completion_text(c)), number(None if w is None else str(w))) for c, w in zip(completions, answer)]


def exact_match(completions: list, answer: list[str] | None = None, **kw) -> list[float]:
    """1.0 when the first integer in the reply equals the answer, else 0.0."""
    return [1.0 if got is not None and got == want else 0.0
            for got, want in _answer_pairs("exact_match", completions, answer)]


def closeness(completions: list, answer: list[str] | None = None, **kw) -> list[float]:
    """Partial credit for a numeric answer: 1 / (1 + |reply - answer|), 0 without a number.

    Exact match gives a policy that is rarely right nothing to learn from; this says
    "11 is nearer to 12 than 4 is", so nearly-right samples point the way."""
    return [1.0 / (1.0 + abs(got - want)) if got is not None and want is not None else 0.0
            for got, want in _answer_pairs("closeness", completions, answer)]


def number_format(completions: list, answer: list[str] | None = None, **kw) -> list[float]:
    """1.0 when the reply is just a number (surrounding whitespace allowed), else 0.0."""
    return [1.0 if _JUST_A_NUMBER.fullmatch(completion_text(c)) else 0.0 for c in completions]


number_format.__name__ = "format"


def length_penalty(completions: list, answer: list[str] | None = None, **kw) -> list[float]:
    """-0.01 per character: pushes towards short replies; pair it with a correctness reward."""
    return [-LENGTH_PENALTY_PER_CHAR * len(completion_text(c)) for c in completions]
