"""Length shaping: a target length with a penalty per unit away, and a penalty for
repeating itself (the share of repeated n-grams)."""
from __future__ import annotations

from studio.rewards.text import completion_text


def _size(text: str, unit: str) -> int:
    return len(text.split()) if unit == "words" else len(text)


def target_length(completions: list, answer: list | None = None, target: int = 200, penalty: float = 0.01,
                  unit: str = "chars", **kw) -> list[float]:
    """-penalty per character (or word, unit=words) away from `target`: 0 at the target."""
    if unit not in ("chars", "words"):
        raise ValueError(f"target_length: unit is chars or words, not {unit!r}")
    return [-penalty * abs(_size(completion_text(c), unit) - target) for c in completions]


def repetition(completions: list, answer: list | None = None, n: int = 3, scale: float = 1.0,
               **kw) -> list[float]:
    """-scale x the share of the reply's word n-grams that repeat an earlier one: 0 for a
    reply that never repeats itself, near -scale for a loop."""
    if n < 1:
        raise ValueError("repetition: n must be at least 1")
    out = []
    for c in completions:
        words = completion_text(c).split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        out.append(-scale * (1 - len(set(grams)) / len(grams)) if grams else 0.0)
    return out
