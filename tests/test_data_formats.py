"""Format detection and normalisation: every format to its exact trl row shape, broken
rows reported with reasons, kind conversions, and a fuzz test that nothing crashes."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.data import FORMATS, convert, detect_format, normalize
from studio.data.normalize import ROLES


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


GLAIVE_CHAT = ('USER: What is 2 plus 3?\n\n\nASSISTANT: <functioncall> {"name": "add", "arguments": '
               '\'{"a": 2, "b": 3}\'} <|endoftext|>\n\n\nFUNCTION RESPONSE: {"result": 5}\n\n\n'
               'ASSISTANT: 2 plus 3 is 5. <|endoftext|>\n')

CASES = [
    ("messages", {"messages": [U("hi"), A("hello")], "id": 7},
     {"messages": [U("hi"), A("hello")], "answer": None}),
    ("messages", {"conversations": [{"role": "system", "content": "be brief"}, U("hi"), A("yo")], "answer": 3},
     {"messages": [{"role": "system", "content": "be brief"}, U("hi"), A("yo")], "answer": "3"}),
    ("sharegpt", {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"},
                                    {"from": "gpt", "value": "a"}]},
     {"messages": [{"role": "system", "content": "s"}, U("q"), A("a")], "answer": None}),
    ("glaive", {"system": "SYSTEM: You can call add.", "chat": GLAIVE_CHAT},
     {"messages": [{"role": "system", "content": "You can call add."}, U("What is 2 plus 3?"),
                   A('<functioncall> {"name": "add", "arguments": \'{"a": 2, "b": 3}\'}'),
                   {"role": "tool", "content": '{"result": 5}'}, A("2 plus 3 is 5.")], "answer": None}),
    ("alpaca", {"instruction": "Add", "input": "2 and 3", "output": "5"},
     {"messages": [U("Add\n\n2 and 3"), A("5")], "answer": None}),
    ("alpaca", {"instruction": "Say hi", "input": "", "output": "hi"},
     {"messages": [U("Say hi"), A("hi")], "answer": None}),
    ("instruction_response", {"instruction": "Q?", "response": "R."},
     {"messages": [U("Q?"), A("R.")], "answer": None}),
    ("prompt_completion", {"prompt": "2+2=", "completion": "4"},
     {"messages": [U("2+2="), A("4")], "answer": None}),
    ("prompt_completion", {"prompt": [U("2+2=")], "completion": [A("4")]},
     {"messages": [U("2+2="), A("4")], "answer": None}),
    ("preference", {"prompt": "q", "chosen": "good", "rejected": "bad"},
     {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")], "answer": None}),
    ("preference", {"prompt": "q", "chosen": [U("q"), A("good")], "rejected": [U("q"), A("bad")]},
     {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")], "answer": None}),
    ("preference_conversations", {"chosen": [U("q"), A("a"), U("q2"), A("good")],
                                  "rejected": [U("q"), A("a"), U("q2"), A("bad")]},
     {"prompt": [U("q"), A("a"), U("q2")], "chosen": [A("good")], "rejected": [A("bad")], "answer": None}),
    ("preference_text", {"chosen": "\n\nHuman: hi\n\nAssistant: hello there\n\nHuman: 2+2?\n\nAssistant: 4",
                         "rejected": "\n\nHuman: hi\n\nAssistant: hello there\n\nHuman: 2+2?\n\nAssistant: 5"},
     {"prompt": [U("hi"), A("hello there"), U("2+2?")], "chosen": [A("4")], "rejected": [A("5")], "answer": None}),
    ("preference_text", {"chosen": "The sky is blue", "rejected": "The sky is green"},
     {"prompt": [U("The sky is")], "chosen": [A("blue")], "rejected": [A("green")], "answer": None}),
    ("kto", {"prompt": "q", "completion": "a", "label": "true"},
     {"prompt": [U("q")], "completion": [A("a")], "label": True, "answer": None}),
    ("kto", {"prompt": [U("q")], "completion": [A("a")], "label": 0},
     {"prompt": [U("q")], "completion": [A("a")], "label": False, "answer": None}),
    ("prompt", {"prompt": "What is 2+3?", "answer": 5}, {"prompt": [U("What is 2+3?")], "answer": "5"}),
    ("prompt", {"question": "Why?"}, {"prompt": [U("Why?")], "answer": None}),
    ("text", {"text": "once upon a time", "meta": {"x": 1}}, {"text": "once upon a time"}),
]


@pytest.mark.parametrize("fmt,row,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_format_is_detected_and_normalised_to_the_trl_shape(fmt, row, expected):
    guess = detect_format([row, row])
    assert guess.name == fmt and guess.kind == FORMATS[fmt].kind and guess.confidence == 1.0
    out, reason = normalize(row, fmt)
    assert reason is None
    assert out == expected


BROKEN = [
    ("messages", {"messages": []}, "'messages' is empty"),
    ("messages", {"messages": [U("hi")]}, "no assistant turn to learn from"),
    ("messages", {"messages": [U("hi"), A("   ")]}, "'messages' turn 1 is empty"),
    ("messages", {"messages": [U("hi"), {"role": "assistant", "content": None}]},
     "'messages' turn 1 content is NoneType, not text"),
    ("messages", {"messages": [{"role": "wizard", "content": "x"}, A("y")]}, "'messages' turn 0 has unknown role 'wizard'"),
    ("messages", {"messages": "not a list"}, "'messages' is str, not a list of turns"),
    ("alpaca", {"instruction": "", "output": "x"}, "'instruction' is empty"),
    ("alpaca", {"instruction": "x"}, "missing field 'output'"),
    ("alpaca", {"instruction": ["x"], "output": "y"}, "'instruction' is list, not text"),
    ("preference", {"prompt": "q", "chosen": "a"}, "missing field 'rejected'"),
    ("preference", {"prompt": "q", "chosen": "a", "rejected": "a"}, "chosen and rejected are the same answer"),
    ("preference_text", {"chosen": "abc", "rejected": "xyz"}, "chosen and rejected share no prompt"),
    ("kto", {"prompt": "q", "completion": "a", "label": "maybe"}, "'label' is not true/false"),
    ("kto", {"prompt": "q", "completion": "a"}, "missing field 'label'"),
    ("prompt", {"prompt": "q", "answer": {"x": 1}}, "'answer' is dict, not text"),
    ("text", {"text": ""}, "'text' is empty"),
    ("text", {"text": 12.5}, None),  # numbers are read as text: "12.5"
    ("text", {"body": "x"}, "missing field 'text'"),
    ("glaive", {"chat": "nothing marked here"}, "no SYSTEM:/USER:/ASSISTANT: turns found"),
    ("text", ["not", "a", "dict"], "row is list, not an object"),
    ("nope", {"text": "x"}, "unknown format 'nope'"),
]


@pytest.mark.parametrize("fmt,row,reason", BROKEN)
def test_rows_that_do_not_fit_give_a_reason_instead_of_raising(fmt, row, reason):
    out, why = normalize(row, fmt)
    if reason is None:
        assert out == {"text": "12.5"} and why is None
    else:
        assert out is None and why == reason


def test_conversions_between_kinds():
    pref, _ = normalize({"prompt": "q", "chosen": "good", "rejected": "bad"}, "preference")
    rows, why = convert(pref, "preference", "unpaired")
    assert why is None and [(r["completion"][0]["content"], r["label"]) for r in rows] == [("good", True), ("bad", False)]
    rows, _ = convert(pref, "preference", "conversation")
    assert rows[0]["messages"] == [U("q"), A("good")]
    conv, _ = normalize({"messages": [{"role": "system", "content": "s"}, U("q"), A("a1"), U("q2"), A("a2")]}, "messages")
    rows, _ = convert(conv, "conversation", "prompt")
    assert rows == [{"prompt": [{"role": "system", "content": "s"}, U("q"), A("a1"), U("q2")], "answer": "a2"}]
    bad, _ = normalize({"prompt": "q", "completion": "wrong", "label": False}, "kto")
    assert convert(bad, "unpaired", "conversation") == ([], "labelled bad: not an example to imitate")
    no_answer, _ = normalize({"prompt": "q"}, "prompt")
    assert convert(no_answer, "prompt", "conversation") == ([], "no answer to learn from")
    text, _ = normalize({"text": "t"}, "text")
    assert convert(text, "text", "preference") == ([], "text rows cannot be used as preference")


def test_detection_reports_unknown_columns_and_mixed_rows():
    guess = detect_format([{"foo": 1, "bar": 2}, None, 3])
    assert guess.name == "unknown" and guess.kind is None and "foo" in guess.note
    guess = detect_format([{"text": "a"}, {"text": "b"}, {"prompt": "p"}])
    assert guess.name == "text" and guess.matched == 2 and guess.sampled == 3 and "prompt (1)" in guess.note
    assert detect_format("not rows").name == "unknown"
    deep = "[" * 100_000 + "]" * 100_000  # JSON text nested past the recursion limit
    assert detect_format([{"messages": deep}]).name == "unknown"
    assert normalize({"messages": deep}, "messages") == (None, "'messages' is str, not a list of turns")


# -- fuzz ---------------------------------------------------------------------------------

KEYS = ["messages", "conversations", "role", "content", "from", "value", "prompt", "chosen", "rejected",
        "completion", "label", "answer", "question", "instruction", "input", "output", "response",
        "text", "system", "chat", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["user", "assistant", "human", "gpt", "tool",
                                                           "USER: a\nASSISTANT: b", "[1, 2]", "{", "true"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
rows = st.one_of(st.dictionaries(st.sampled_from(KEYS), values, max_size=5), values)


def _well_formed(out: dict, kind: str) -> bool:
    def msgs(v):
        return isinstance(v, list) and all(
            isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] in ROLES
            and isinstance(m["content"], str) for m in v)

    if kind == "text":
        return isinstance(out["text"], str) and out["text"].strip() != ""
    if kind == "conversation":
        return msgs(out["messages"]) and any(m["role"] == "assistant" for m in out["messages"])
    if kind == "preference":
        return all(msgs(out[k]) and out[k] for k in ("prompt", "chosen", "rejected"))
    if kind == "unpaired":
        return msgs(out["prompt"]) and msgs(out["completion"]) and isinstance(out["label"], bool)
    return msgs(out["prompt"]) and (out["answer"] is None or isinstance(out["answer"], str))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows, max_size=6))
def test_fuzz_detect_and_normalize_never_crash_and_output_the_kind_shape(batch):
    guess = detect_format(batch)
    assert guess.name in FORMATS or guess.name == "unknown"
    for row in batch:
        for fmt, spec in FORMATS.items():
            out, why = normalize(row, fmt)
            assert (out is None) != (why is None)
            if out is not None:
                assert _well_formed(out, spec.kind), (fmt, row, out)
                for target in ("text", "conversation", "preference", "unpaired", "prompt"):
                    converted, reason = convert(out, spec.kind, target)
                    assert all(_well_formed(r, target) for r in converted)
                    assert bool(converted) != bool(reason)
