"""Rewards for online RL (GRPO, PPO), chosen in `method.reward`.

Each is `fn(completions, answer=None, **kw) -> list[float]`, the shape trl's GRPOTrainer
calls: `completions` are strings, or (conversational data) lists of {"role", "content"}
messages; `answer` is the prompt data's "answer" column (the reference), one per
completion; trl also passes prompts, completion_ids and other columns. trl names the
logged metric after the function (rewards/<name>/mean).

The library (studio.rewards.registry.LIBRARY): answer checks (exact_match, match,
numeric, math_equiv, contains, regex, choice), formats (format, think_format,
json_valid, json_schema, json_match, tool_call), code (code_tests, sandboxed), length
(length_penalty, target_length, repetition); plus `model:<run dir>` (a trained reward
model, loaded by the training method) and `file:path=<your .py>` (local mode only).
Arguments and weights: see studio.rewards.config. Several entries are summed.
"""
from __future__ import annotations

from collections.abc import Callable

from studio.rewards.arith import (LENGTH_PENALTY_PER_CHAR, closeness, exact_match, length_penalty,
                                  number_format)
from studio.rewards.config import Entry, parse, to_text
from studio.rewards.registry import FILE, LIBRARY, MODEL, build, configure
from studio.rewards.text import completion_text

MODEL_PREFIX = "model:"
RewardFn = Callable[..., list[float]]

# name -> (function, description): every library reward (the Method tab offers these)
PRESETS: dict[str, tuple[RewardFn, str]] = {name: (fn, text) for name, (fn, text, _) in LIBRARY.items()}

__all__ = ["LENGTH_PENALTY_PER_CHAR", "MODEL_PREFIX", "PRESETS", "Entry", "RewardFn", "build", "closeness",
           "completion_text", "configure", "exact_match", "get_reward", "is_model_reward", "length_penalty",
           "number_format", "parse", "to_text", "unknown_rewards"]


def is_model_reward(name: str) -> bool:
    return name.strip().startswith(MODEL_PREFIX)


def unknown_rewards(spec_reward) -> list[str]:
    """The reward names in method.reward that are neither in the library nor model/file."""
    try:
        entries = parse(spec_reward)
    except ValueError:
        return []
    return [e.name for e in entries if e.name not in LIBRARY and e.name not in (MODEL, FILE)]


def get_reward(name: str) -> RewardFn:
    """The library function called `name`; a clear error naming method.reward otherwise."""
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
