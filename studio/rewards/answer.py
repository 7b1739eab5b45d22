"""Answer checks: does the reply's answer (after any reasoning) match the reference in
the data's "answer" column? Each returns 1.0 / 0.0 per completion (0.0 when the reference
is empty), in trl's reward signature."""
from __future__ import annotations

import re

from studio.rewards.text import answer_part, completion_text, last_number, normalise, references


def _pairs(name, completions, answer):
    return [(completion_text(c), None if w is None else str(w))
            for c, w in zip(completions, references(name, completions, answer))]


def match(completions: list, answer: list | None = None, normalize: bool = True, **kw) -> list[float]:
    """1.0 when the answer part equals the reference; with normalize (default) case,
    spacing, quotes and a final full stop are ignored."""
    same = (lambda a, b: normalise(a) == normalise(b)) if normalize else (lambda a, b: a.strip() == b.strip())
    return [1.0 if want is not None and same(answer_part(got), want) else 0.0
            for got, want in _pairs("match", completions, answer)]


def numeric(completions: list, answer: list | None = None, tol: float = 1e-6, rel: float = 0.0,
            **kw) -> list[float]:
    """1.0 when the last number of the answer part is within tol (absolute) or rel
    (relative) of the reference number."""
    out = []
    for got, want in _pairs("numeric", completions, answer):
        a, b = last_number(answer_part(got)), None if want is None else last_number(want)
        ok = a is not None and b is not None and (abs(a - b) <= tol or abs(a - b) <= rel * abs(b))
        out.append(1.0 if ok else 0.0)
    return out


def math_equiv(completions: list, answer: list | None = None, **kw) -> list[float]:
    """1.0 when math-verify finds the reply's answer equal to the reference (1/2 = 0.5 =
    \\frac{1}{2}; boxed answers are found). Timeouts off: signal-based ones fail outside
    the main thread (the app's handlers), and the answers here are short."""
    import logging

    from math_verify import parse, verify

    for name in ("math_verify.parser", "math_verify.grader"):  # "timeout disabled" on every call
        logging.getLogger(name).setLevel(logging.ERROR)
    out = []
    for got, want in _pairs("math_equiv", completions, answer):
        if not want:
            out.append(0.0)
            continue
        gold = parse(want if "$" in want or "\\" in want else f"${want}$", parsing_timeout=None)
        pred = parse(answer_part(got), parsing_timeout=None)
        out.append(1.0 if gold and pred and verify(gold, pred, timeout_seconds=None) else 0.0)
    return out


def contains(completions: list, answer: list | None = None, text: str = "", ignore_case: bool = True,
             **kw) -> list[float]:
    """1.0 when the reply contains `text`, or (no text given) the row's reference."""
    wants = [text] * len(completions) if text else [w for _, w in _pairs("contains", completions, answer)]
    fold = (lambda s: s.lower()) if ignore_case else (lambda s: s)
    return [1.0 if want and fold(want) in fold(completion_text(c)) else 0.0 for c, want in zip(completions, wants)]


def regex(completions: list, answer: list | None = None, pattern: str = "", flags: str = "",
          full: bool = False, **kw) -> list[float]:
    """1.0 when the reply matches `pattern` (search, or the whole reply with full=true);
    flags: any of i (ignore case), m (multi-line), s (dot matches newline)."""
    compiled = compile_pattern(pattern, flags)
    test = compiled.fullmatch if full else compiled.search
    return [1.0 if test(completion_text(c).strip() if full else completion_text(c)) else 0.0 for c in completions]


def compile_pattern(pattern: str, flags: str = "") -> re.Pattern:
    if not pattern:
        raise ValueError("regex needs pattern=..., e.g. regex:pattern='^\\d+$'")
    bits = 0
    for f in flags:
        if f.lower() not in "ims":
            raise ValueError(f"regex flags: '{f}' is not one of i, m, s")
        bits |= {"i": re.I, "m": re.M, "s": re.S}[f.lower()]
    try:
        return re.compile(pattern, bits)
    except re.error as exc:
        raise ValueError(f"regex pattern {pattern!r} does not compile: {exc}") from None


_CHOICE = (re.compile(r"answer\s*(?:is|:)?\s*\(?([A-Z])\b\)?", re.I),
           re.compile(r"\(([A-Z])\)"), re.compile(r"^\s*([A-Z])(?:[).:\s]|$)"))


def choice_letter(text: str, letters: str = "ABCDE") -> str | None:
    """The option letter a reply picks: "The answer is (B)", "(B)", "B) ...", "B"."""
    body = answer_part(text)
    for pattern in _CHOICE:
        for found in pattern.finditer(body):
            letter = found.group(1).upper()
            if letter in letters.upper():
                return letter
    return None


def choice(completions: list, answer: list | None = None, letters: str = "ABCDE", **kw) -> list[float]:
    """1.0 when the option letter the reply picks is the reference letter."""
    return [1.0 if want and choice_letter(got, letters) == want.strip().strip("()").upper()[:1] else 0.0
            for got, want in _pairs("choice", completions, answer)]
