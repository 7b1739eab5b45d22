"""The shipped tokenizer and data: correct, split cleanly, and reproducible by the script."""
import filecmp
import json
import operator
import re
import subprocess
import sys
from pathlib import Path

import pytest

from studio import tasks

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
DATA = ASSETS / "data"
OPS = {"+": operator.add, "-": operator.sub}


def _rows(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ASSETS / "tokenizer"))


@pytest.fixture(scope="module")
def items_by_prompt():
    return {it["prompt"]: it for it in tasks.make_items(0)}


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_round_trips_text(tok):
    for text in ["What is 3 + 5?", "The small red fox jumps in the park.\n\n  tabs\there",
                 "Café, naïve, 日本語, emoji 🙂 and <b>markup</b>", "USER: hi <|endoftext|>"]:
        assert tok.decode(tok(text)["input_ids"]) == text


def test_digits_are_single_tokens(tok):
    pieces = tok.tokenize("12345 + 67890 = 80235")
    digits = [p for p in pieces if any(ch.isdigit() for ch in p)]
    assert digits == list("1234567890" "80235")
    multi_digit = [t for t in tok.get_vocab() if len(re.findall(r"\d", t)) > 1]
    assert multi_digit == []


def test_special_tokens(tok):
    assert len(tok) == 1024
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>" and tok.bos_token is None
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.eos_token_id != tok.pad_token_id
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]:
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1


CHAT = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 3 + 5?"},
        {"role": "assistant", "content": "8"},
        {"role": "user", "content": "And 2 + 2?"},
        {"role": "assistant", "content": "It is 4."}]


def test_chat_template_renders_chatml(tok):
    assert "{% generation %}" in tok.chat_template.replace("{%-", "{%")
    text = tok.apply_chat_template(CHAT, tokenize=False)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                    "<|im_start|>user\nWhat is 3 + 5?<|im_end|>\n"
                    "<|im_start|>assistant\n8<|im_end|>\n"
                    "<|im_start|>user\nAnd 2 + 2?<|im_end|>\n"
                    "<|im_start|>assistant\nIt is 4.<|im_end|>")  # ends where generation stops
    prompt = tok.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWhat is 3 + 5?<|im_end|>\n<|im_start|>assistant\n")


def test_assistant_mask_covers_exactly_the_assistant_turns(tok):
    out = tok.apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    # the expected mask, built by tokenising the conversation piece by piece
    expected = []
    for i, m in enumerate(CHAT):
        head = tok(f"<|im_start|>{m['role']}\n", add_special_tokens=False)["input_ids"]
        body = tok(f"{m['content']}<|im_end|>", add_special_tokens=False)["input_ids"]
        tail = tok("\n", add_special_tokens=False)["input_ids"] if i < len(CHAT) - 1 else []
        is_assistant = int(m["role"] == "assistant")
        expected += [0] * len(head) + [is_assistant] * len(body) + [0] * len(tail)
    assert mask == expected
    assert tok.decode([i for i, k in zip(ids, mask) if k]) == "8<|im_end|>It is 4.<|im_end|>"


def test_tool_role_and_tool_calls(tok):
    from studio.tokenizer import CHATML_TEMPLATE

    assert tok.chat_template == CHATML_TEMPLATE
    chat = [{"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "get_weather",
                                                  "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "content": '{"temperature_c": 3}'},
            {"role": "assistant", "content": "It is 3 degrees."}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    text = tok.apply_chat_template(chat, tools=tools, tokenize=False)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert ('<|im_start|>assistant\n<tool_call>{"name": "get_weather", '
            '"arguments": {"city": "Oslo"}}</tool_call><|im_end|>\n') in text
    assert '<|im_start|>tool\n{"temperature_c": 3}<|im_end|>\n' in text
    out = tok.apply_chat_template(chat, tools=tools, return_assistant_tokens_mask=True,
                                  return_dict=True)
    kept = tok.decode([i for i, k in zip(out["input_ids"], out["assistant_masks"]) if k])
    assert kept.startswith("<tool_call>") and kept.endswith("It is 3 degrees.<|im_end|>")
    assert "temperature_c" not in kept


def test_train_tokenizer_small_and_reloadable(tmp_path):
    from transformers import AutoTokenizer

    from studio.tokenizer import train_tokenizer

    texts = ["the cat sat on the mat. 12 + 30 = 42"] * 20 + ["<|im_start|>user\nhi<|im_end|>"]
    trained = train_tokenizer(texts, 300, tmp_path, special_tokens=["<|extra|>"])
    assert len(trained) <= 300 and "<|extra|>" in trained.get_vocab()
    # special tokens never leak into merges
    assert not [t for t in trained.get_vocab() if "<|" in t and t not in trained.all_special_tokens
                and t != "<|extra|>"]
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded("the cat sat")["input_ids"] == trained("the cat sat")["input_ids"]
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(texts, 100, None)


# ---------------------------------------------------------------- the arithmetic task

def test_items_cover_both_operations_in_many_phrasings():
    items = tasks.make_items(0)
    for op in "+-":
        templates = {it["template"] for it in items if it["op"] == op}
        assert len(templates) >= 8
    assert all(int(it["answer"]) >= 0 for it in items)
    assert len(items) == 10 * 100 + 9 * 55
    assert tasks.make_items(0) == tasks.make_items(0) != tasks.make_items(1)


def test_split_holds_out_whole_combinations():
    items = tasks.make_items(3)
    train, test = tasks.split_items(items, test_fraction=0.15, seed=3)
    key = lambda it: (it["a"], it["b"], it["template"])  # noqa: E731
    assert not {key(i) for i in train} & {key(i) for i in test}
    assert len(train) + len(test) == len(items)
    assert abs(len(test) / len(items) - 0.15) < 0.01
    with pytest.raises(ValueError, match="test_fraction"):
        tasks.split_items(items, test_fraction=1.5)


@pytest.mark.parametrize("reply,expected", [
    ("9", "9"), ("The answer is 12.", "12"), ("  007", "7"), ("-4", "-4"),
    ("3.5 or 4", "3"), ("none", None), ("", None), (None, None)])
def test_extract_answer(reply, expected):
    assert tasks.extract_answer(reply) == expected


def test_is_correct():
    assert tasks.is_correct("It is 8.", "8") and tasks.is_correct("8", 8)
    assert not tasks.is_correct("18", "8") and not tasks.is_correct("eight", "8")


# ---------------------------------------------------------------- the shipped files

SPLIT_FILES = [("arith_sft_train.jsonl", "arith_sft_test.jsonl"),
               ("arith_prefs_train.jsonl", "arith_prefs_test.jsonl"),
               ("arith_prompts_train.jsonl", "arith_prompts_test.jsonl")]


def _prompt(row):
    return row["messages"][0]["content"] if "messages" in row else row["prompt"]


@pytest.mark.parametrize("train_name,test_name", SPLIT_FILES)
def test_shipped_splits_are_disjoint_and_correct(train_name, test_name, items_by_prompt):
    train, test = _rows(train_name), _rows(test_name)
    # a prompt string names exactly one (a, b, template), so disjoint prompts = disjoint combos
    assert not {_prompt(r) for r in train} & {_prompt(r) for r in test}
    assert len(test) / (len(train) + len(test)) == pytest.approx(0.15, abs=0.01)
    for row in train + test:
        item = items_by_prompt[_prompt(row)]
        assert sorted(re.findall(r"\d", _prompt(row))) == sorted([str(item["a"]), str(item["b"])])
        right = str(OPS[item["op"]](item["a"], item["b"]))
        if "messages" in row:
            assert row["messages"][1] == {"role": "assistant", "content": right}
            assert row["answer"] == right
        elif "chosen" in row:
            assert row["chosen"] == right and row["rejected"] != right
            assert int(row["rejected"]) >= 0
        else:
            assert row["answer"] == right


def test_kto_rows_are_labelled_by_correctness(items_by_prompt):
    rows = _rows("arith_kto_train.jsonl")
    assert {r["label"] for r in rows} == {True, False}
    for row in rows:
        item = items_by_prompt[row["prompt"]]
        right = str(OPS[item["op"]](item["a"], item["b"]))
        assert row["label"] == (row["completion"] == right)
    test_prompts = {r["prompt"] for r in _rows("arith_prompts_test.jsonl")}
    assert not {r["prompt"] for r in rows} & test_prompts


def test_corpus_teaches_every_sum():
    text = "\n".join(r["text"] for r in _rows("corpus_train.jsonl"))
    assert len(_rows("corpus_train.jsonl")) >= 3000 and _rows("corpus_test.jsonl")
    missing = [(a, b) for a in range(10) for b in range(10)
               if f"{a} + {b} = {a + b}" not in text and f"{a} plus {b} is {a + b}" not in text]
    assert missing == []
    assert re.search(r"\b(cat|dog|fox|bird)s?\b", text)


def test_glaive_transcripts_parse():
    rows = _rows("tools_glaive.jsonl")
    assert 30 <= len(rows) <= 60
    calls = 0
    for row in rows:
        assert row["system"].startswith("SYSTEM: ") and row["chat"].startswith("USER: ")
        for name, args in re.findall(r"<functioncall> \{\"name\": \"(\w+)\", \"arguments\": '(.*?)'\}",
                                     row["chat"]):
            assert f'"name": "{name}"' in row["system"]
            assert isinstance(json.loads(args), dict)
            calls += 1
    assert calls >= 30
    assert sum("<functioncall>" not in r["chat"] for r in rows) >= 5


def test_assets_stay_small():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 4 * 2**20


def test_script_regenerates_identical_assets(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_assets.py"),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for sub in ("data", "tokenizer"):
        shipped = sorted(p.name for p in (ASSETS / sub).iterdir())
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == shipped
        _, mismatch, errors = filecmp.cmpfiles(ASSETS / sub, tmp_path / sub, shipped, shallow=False)
        assert mismatch == [] and errors == [], f"{sub}: rerun scripts/make_assets.py and commit"
