"""The studio's shipped toy task: single-digit arithmetic asked in many phrasings.

Small enough that a ~1M-parameter model learns it on CPU in minutes, checkable by a
regex (so it doubles as the GRPO/PPO reward), and split so the test set holds whole
(a, b, template) combinations the model never saw: a model that only memorised
strings fails it, one that learned to add passes.

Pure python: the UI and the data code import this without torch.
"""
from __future__ import annotations

import random
import re

OPERANDS = range(10)

# Template ids are unique across operations, so (a, b, template) names one item.
TEMPLATES: dict[str, tuple[str, str]] = {
    # id: (op, phrasing)
    "add_what_is": ("+", "What is {a} + {b}?"),
    "add_add": ("+", "Add {a} and {b}."),
    "add_compute_plus": ("+", "Compute {a} plus {b}."),
    "add_sum_of": ("+", "What is the sum of {a} and {b}?"),
    "add_equation": ("+", "{a} + {b} ="),
    "add_how_much": ("+", "How much is {a} plus {b}?"),
    "add_calculate": ("+", "Calculate {a} + {b}."),
    "add_count_up": ("+", "Start at {a} and count up {b}. Where do you end?"),
    "add_answer_only": ("+", "Give only the answer: {a} + {b}"),
    "add_together": ("+", "{a} and {b} added together make what?"),
    "sub_what_is": ("-", "What is {a} - {b}?"),
    "sub_subtract": ("-", "Subtract {b} from {a}."),
    "sub_compute_minus": ("-", "Compute {a} minus {b}."),
    "sub_difference": ("-", "What is the difference between {a} and {b}?"),
    "sub_equation": ("-", "{a} - {b} ="),
    "sub_how_much": ("-", "How much is {a} minus {b}?"),
    "sub_calculate": ("-", "Calculate {a} - {b}."),
    "sub_count_down": ("-", "Start at {a} and count down {b}. Where do you end?"),
    "sub_answer_only": ("-", "Give only the answer: {a} - {b}"),
}

_INTEGER = re.compile(r"(?<![\d.])-?\d+")


def compute(a: int, b: int, op: str) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    raise ValueError(f"unknown operation {op!r}: use '+' or '-'")


def make_items(seed: int = 0, ops: tuple[str, ...] = ("+", "-")) -> list[dict]:
    """Every (a, b, template) item for the given operations, shuffled by `seed`.

    Subtraction only where a >= b, so every answer is a non-negative number.
    """
    items = []
    for template, (op, phrasing) in TEMPLATES.items():
        if op not in ops:
            continue
        for a in OPERANDS:
            for b in OPERANDS:
                if op == "-" and a < b:
                    continue
                items.append({
                    "prompt": phrasing.format(a=a, b=b),
                    "answer": str(compute(a, b, op)),
                    "a": a, "b": b, "op": op, "template": template,
                })
    random.Random(seed).shuffle(items)
    return items


def split_items(items: list[dict], test_fraction: float = 0.15,
                seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, test): whole (a, b, template) combinations go to one side only."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    keys = sorted({(it["a"], it["b"], it["template"]) for it in items})
    random.Random(seed).shuffle(keys)
    n_test = max(1, round(len(keys) * test_fraction))
    test_keys = set(keys[:n_test])
    train = [it for it in items if (it["a"], it["b"], it["template"]) not in test_keys]
    test = [it for it in items if (it["a"], it["b"], it["template"]) in test_keys]
    return train, test


def extract_answer(text: str | None) -> str | None:
    """The first integer in a reply, normalised ("09" -> "9"); None when there is none."""
    if not text:
        return None
    match = _INTEGER.search(text)
    return str(int(match.group())) if match else None


def is_correct(reply: str | None, answer: str | int) -> bool:
    got = extract_answer(reply)
    want = extract_answer(str(answer))
    return got is not None and got == want
