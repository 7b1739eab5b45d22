"""Reward presets for online RL (GRPO, PPO), chosen by name in `method.reward`.

Each preset is `fn(completions, answer=None, **kw) -> list[float]`, the shape trl's
GRPOTrainer calls: `completions` are strings, or (conversational data) lists of
{"role", "content"} messages; `answer` is the prompt data's "answer" column, one per
completion; trl also passes prompts, completion_ids and other columns, which the
presets ignore. trl names the logged metric after the function (rewards/<name>/mean),
so each function's __name__ is its preset name.

`method.reward` may also be "model:<run dir or folder>": a trained reward model. Those
are loaded by the training method, not here (this module stays pure python).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from studio.spec import comma_list
from studio.tasks import extract_answer

MODEL_PREFIX = "model:"
LENGTH_PENALTY_PER_CHAR = 0.01
_JUST_A_NUMBER = re.compile(r"\s*-?\d+\s*")

RewardFn = Callable[..., list[float]]


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


def _answer_pairs(name: str, completions: list, answer: list | None) -> list[tuple[int | None, int | None]]:
    """(number in the reply, number in the answer column) per completion; None where absent."""
    if answer is None:
        raise ValueError(
            f"reward {name} needs an 'answer' column in the prompt data "
            "(e.g. assets/data/arith_prompts_train.jsonl); set method.reward to a preset "
            "that needs no answer (format, length_penalty) or to model:<reward model dir>")
    if len(answer) != len(completions):
        raise ValueError(f"{name} got {len(completions)} completions but {len(answer)} answers")

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


PRESETS: dict[str, tuple[RewardFn, str]] = {
    "exact_match": (exact_match, "1 if the first number in the reply equals the answer column, else 0"),
    "closeness": (closeness, "1 / (1 + |reply - answer|): partial credit for a number near the answer"),
    "format": (number_format, "1 if the reply is just a number, else 0"),
    "length_penalty": (length_penalty,
                       f"-{LENGTH_PENALTY_PER_CHAR} per character of the reply (shorter is better)"),
}


def unknown_rewards(spec_reward: str | None) -> list[str]:
    """The entries of method.reward (several are summed, e.g. "exact_match, closeness")
    that are neither a preset nor model:<dir>."""
    return [n for n in comma_list(spec_reward) if n not in PRESETS and not is_model_reward(n)]


def is_model_reward(name: str) -> bool:
    return name.strip().startswith(MODEL_PREFIX)


def get_reward(name: str) -> RewardFn:
    """The preset function called `name`; a clear error naming method.reward otherwise."""
    key = (name or "").strip()
    if key in PRESETS:
        return PRESETS[key][0]
    if is_model_reward(key):
        raise ValueError(
            f"method.reward {name!r} is a reward model, not a preset: the training method "
            "loads it from the folder after 'model:'")
    raise ValueError(
        f"method.reward: unknown reward {name!r}; choose one of {', '.join(PRESETS)} "
        f"or '{MODEL_PREFIX}<run dir or folder>' for a trained reward model")
