"""build() on the shipped data, the method/data kind rules, eval splits, weighted mixing
(0.6/0.3/0.1 within 2 points over 10k rows), the preview's token counts and the CLI."""
from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest

from studio.data import DataError, add_cli, build, preview
from studio.methods import REGISTRY
from studio.spec import DataSource, RunSpec

SFT = "assets/data/arith_sft_train.jsonl"
PREFS = "assets/data/arith_prefs_train.jsonl"
KTO = "assets/data/arith_kto_train.jsonl"
PROMPTS = "assets/data/arith_prompts_train.jsonl"
CORPUS = "assets/data/corpus_train.jsonl"
GLAIVE = "assets/data/tools_glaive.jsonl"


def spec_for(method: str, *paths, weights=None, **data) -> RunSpec:
    spec = RunSpec()
    spec.method.name = method
    spec.data.sources = [DataSource(path=p, weight=w) for p, w in zip(paths, weights or [1.0] * len(paths))]
    for k, v in data.items():
        setattr(spec.data, k, v)
    return spec


def run(spec):
    return build(spec, REGISTRY[spec.method.name].data_kinds)


def lines(path):
    with open(path) as fh:
        return sum(1 for _ in fh)


def test_shipped_data_builds_for_each_method_family_with_its_own_test_file_as_eval():
    cases = [("sft", SFT, "conversation", ["messages", "answer"]),
             ("dpo", PREFS, "preference", ["prompt", "chosen", "rejected"]),
             ("kto", KTO, "unpaired", ["prompt", "completion", "label"]),
             ("grpo", PROMPTS, "prompt", ["prompt", "answer"]),
             ("pretrain", CORPUS, "text", ["text"])]
    for method, path, kind, columns in cases:
        bundle = run(spec_for(method, path))
        assert bundle.kind == kind and bundle.train.column_names == columns
        test_file = path.replace("_train", "_test")
        if method == "kto":  # no arith_kto_test file: a seeded 5% split
            assert len(bundle.eval) == round(lines(path) * 0.05)
            assert len(bundle.train) + len(bundle.eval) == lines(path)
        else:
            assert len(bundle.train) == lines(path) and len(bundle.eval) == lines(test_file)
            assert "test" in bundle.report[0].eval_from
    dpo = run(spec_for("dpo", PREFS))
    assert dpo.train[0]["chosen"][0]["role"] == "assistant" and dpo.train[0]["prompt"][0]["role"] == "user"


def test_mismatched_data_names_the_source_and_says_why():
    with pytest.raises(DataError) as err:
        run(spec_for("dpo", PREFS, CORPUS))
    assert err.value.field == "data.sources.1"
    assert err.value.message == ("DPO needs preference pairs (prompt/chosen/rejected); this file is raw text")
    with pytest.raises(DataError) as err:
        run(spec_for("pretrain", CORPUS, GLAIVE))
    assert err.value.field == "data.sources.1" and "Glaive" in err.value.message


def test_conversions_let_sft_use_preferences_and_grpo_use_conversations():
    bundle = run(spec_for("sft", PREFS, GLAIVE, eval_fraction=0.0))
    assert bundle.kind == "conversation"
    roles = Counter(m["role"] for row in bundle.train for m in row["messages"])
    assert roles["tool"] > 0  # the Glaive function results
    pref_row = next(r for r in bundle.parts[0])
    assert pref_row["messages"][-1]["role"] == "assistant"
    grpo = run(spec_for("grpo", SFT, PROMPTS, eval_fraction=0.0))
    assert grpo.kind == "prompt" and all(r["answer"] for r in grpo.train)
    kto = run(spec_for("kto", KTO, PREFS, eval_fraction=0.0, mixing="concat"))
    assert kto.kind == "unpaired"  # KTO prefers unpaired; preference pairs become two labelled rows
    assert len(kto.train) == lines(KTO) + 2 * lines(PREFS)


def test_eval_split_is_seeded_and_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_ROOTS", str(tmp_path))
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(200)))
    a = run(spec_for("pretrain", str(path), eval_fraction=0.1, seed=3))
    b = run(spec_for("pretrain", str(path), eval_fraction=0.1, seed=3))
    c = run(spec_for("pretrain", str(path), eval_fraction=0.1, seed=4))
    assert a.eval["text"] == b.eval["text"] != c.eval["text"] and len(a.eval) == 20
    assert not set(a.eval["text"]) & set(a.train["text"])
    assert run(spec_for("pretrain", str(path), eval_fraction=0.0)).eval is None
    assert len(run(spec_for("pretrain", str(path), eval_fraction=0.0, max_rows=50)).train) == 50


def _three_sources(tmp_path, monkeypatch, sizes=(8000, 4000, 1500)):
    monkeypatch.setenv("STUDIO_DATA_ROOTS", str(tmp_path))
    paths = []
    for name, n in zip("abc", sizes):
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps({"text": f"{name}{i}"}) + "\n" for i in range(n)))
        paths.append(str(p))
    return paths


def test_weighted_mix_lands_within_two_points_of_each_weight(tmp_path, monkeypatch):
    paths = _three_sources(tmp_path, monkeypatch)
    spec = spec_for("pretrain", *paths, weights=[6, 3, 1], eval_fraction=0.0, seed=1)
    result = preview(spec, n=12)
    assert result["counted_rows"] >= 10_000
    for want, got in zip([0.6, 0.3, 0.1], result["proportions"]["achieved"]):
        assert abs(got - want) < 0.02, result["proportions"]
    assert [s["requested"] for s in result["sources"]] == pytest.approx([0.6, 0.3, 0.1])
    # the sampled rows say where they came from, and they did
    assert len(result["rows"]) == 12
    assert all(r["row"]["text"][0] == "abc"[r["source"]] for r in result["rows"])
    # build() gives the same blend, without the bookkeeping column
    train = build(spec, ("text",)).train
    assert train.column_names == ["text"] and len(train) == result["total_rows"]
    first = Counter(t[0] for t in train["text"][:10_000])
    assert abs(first["a"] / 10_000 - 0.6) < 0.02 and abs(first["c"] / 10_000 - 0.1) < 0.02


def test_concat_keeps_every_row_once(tmp_path, monkeypatch):
    paths = _three_sources(tmp_path, monkeypatch, sizes=(30, 20, 10))
    result = preview(spec_for("pretrain", *paths, weights=[6, 3, 1], eval_fraction=0.0, mixing="concat"), n=3)
    assert result["total_rows"] == 60
    assert result["proportions"]["achieved"] == pytest.approx([0.5, 1 / 3, 1 / 6])


def test_preview_counts_tokens_with_the_chat_template_and_truncation():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained("assets/tokenizer")
    spec = spec_for("sft", SFT, GLAIVE, weights=[0.9, 0.1], eval_fraction=0.0)
    spec.model.max_seq_len = 64
    result = preview(spec, n=4, tokenizer=tok)
    assert result["unit"] == "tokens" and result["template"] == "tokenizer"
    glaive_rows = build(spec_for("sft", GLAIVE, eval_fraction=0.0), ("conversation",)).train
    expected = sorted(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                      for r in glaive_rows)
    stats = result["sources"][1]["lengths"]
    assert stats["rows"] == len(expected) and stats["max"] == expected[-1]
    assert stats["mean"] == pytest.approx(sum(expected) / len(expected), abs=0.05)
    assert stats["over_max"] == sum(n > 64 for n in expected)
    assert result["truncated"] == stats["over_max"] + result["sources"][0]["lengths"]["over_max"]
    chars = preview(spec, n=1)
    assert chars["unit"] == "characters" and chars["sources"][1]["lengths"]["max"] > expected[-1]


def _cli(argv, capsys):
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr()


def test_cli_inspect_and_mix(tmp_path, capsys):
    code, out = _cli(["data", "inspect", GLAIVE, "--json"], capsys)
    info = json.loads(out.out)
    assert code == 0 and info["format"] == "glaive" and info["rows"] == lines(GLAIVE) and info["bad"] == 0
    assert info["columns"] == ["system", "chat"]
    assert {m["role"] for m in info["example"]["messages"]} == {"system", "user", "assistant", "tool"}
    code, out = _cli(["data", "inspect", PREFS], capsys)
    assert code == 0 and "format:   preference" in out.out and f"rows:     {lines(PREFS)}" in out.out
    # locally any readable file may be inspected; /etc/passwd is refused for what it is, not where
    code, out = _cli(["data", "inspect", "/etc/passwd"], capsys)
    assert code == 2 and "unsupported file type" in out.err

    spec = spec_for("sft", SFT, PREFS, weights=[0.7, 0.3])
    spec.save(tmp_path / "run.yaml")
    code, out = _cli(["data", "mix", str(tmp_path / "run.yaml"), "--preview", "3", "--tokenizer", "none", "--json"], capsys)
    result = json.loads(out.out)
    assert code == 0 and len(result["rows"]) == 3 and result["kind"] == "conversation"
    assert abs(result["proportions"]["achieved"][0] - 0.7) < 0.05
    code, out = _cli(["data", "mix", str(tmp_path / "run.yaml"), "--preview", "1", "--tokenizer", "none"], capsys)
    assert code == 0 and "70.0%" in out.out and "arith_prefs_train.jsonl" in out.out
