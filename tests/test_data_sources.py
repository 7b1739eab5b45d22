"""Reading sources: every file type, broken lines counted with reasons, the allowed
roots (no traversal out), `name | subset | weight` lines, and the hub path through a
local dataset folder (nothing reaches the hub)."""
from __future__ import annotations

import json
import os

import pytest

from studio.data import DataError, allowed_roots, build, parse_source_lines, resolve_path
from studio.data.preview import inspect_source
from studio.spec import DataSource, RunSpec


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_ROOTS", str(tmp_path))
    return tmp_path


def spec_for(method: str, *sources: DataSource, **data) -> RunSpec:
    spec = RunSpec()
    spec.method.name = method
    spec.data.sources = list(sources)
    spec.data.eval_fraction = data.pop("eval_fraction", 0.0)
    for k, v in data.items():
        setattr(spec.data, k, v)
    return spec


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_broken_jsonl_rows_are_counted_with_reasons_and_the_good_rows_survive(root):
    good = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(5)]
    lines = [good[0], '{"messages": [', good[1], "[1, 2, 3]", {"messages": []}, good[2],
             {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
             {"messages": [{"role": "user", "content": 7.5}, {"role": "assistant", "content": ["bad"]}]},
             {"messages": "wrong type"}, {"text_only": "missing field"},
             json.dumps({"messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)},
                                      {"role": "assistant", "content": "y"}]}),
             good[3], "", good[4]]
    path = write_jsonl(root / "chat.jsonl", lines)
    bundle = build(spec_for("sft", DataSource(path=str(path))), ("conversation",))
    rep = bundle.report[0]
    assert rep.format == "messages" and bundle.kind == "conversation"
    assert len(bundle.train) == 5 and rep.train_rows == 5
    assert [r["messages"][0]["content"] for r in bundle.train] == ["q0", "q1", "q2", "q3", "q4"]
    assert rep.bad == 8 and rep.rows == 13
    assert rep.reasons["malformed JSON"] == 1
    assert rep.reasons["line is a JSON list, not an object"] == 1
    assert rep.reasons["'messages' is empty"] == 1
    assert rep.reasons["'messages' turn 0 is empty"] == 1
    assert rep.reasons["'messages' turn 1 content is list, not text"] == 1
    assert rep.reasons["'messages' is str, not a list of turns"] == 1
    assert rep.reasons["missing field 'messages'"] == 1
    assert any(r.startswith("line is 10.5 MB") for r in rep.reasons)
    assert (2, "malformed JSON") in rep.examples


def test_json_csv_parquet_and_txt_files(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "list.json").write_text(json.dumps([{"instruction": "i1", "output": "o1"}, 5,
                                                {"instruction": "i2", "output": "o2"}]))
    (root / "cols.json").write_text(json.dumps({"prompt": ["p1", "p2"], "answer": ["1", "2"]}))
    (root / "kto.csv").write_text('\ufeffprompt,completion,label\np1,c1,true\np2,c2,0\np3,c3,perhaps\n'
                                  '"p,4","c\n4",False\n')
    (root / "conv.csv").write_text("messages\n" + '"' + json.dumps(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]).replace('"', '""') + '"\n')
    pq.write_table(pa.table({"prompt": ["q1", "q2"], "chosen": ["good", "fine"], "rejected": ["bad", "fine"]}),
                   root / "prefs.parquet")
    (root / "lines.txt").write_text("first doc\n\nsecond doc\n   \nthird doc\n")

    info = inspect_source(DataSource(path=str(root / "list.json")))
    assert (info["format"], info["ok"], info["bad"]) == ("alpaca", 2, 1)
    assert info["reasons"] == {"row is a JSON int, not an object": 1}
    info = inspect_source(DataSource(path=str(root / "cols.json")))
    assert info["format"] == "prompt" and info["example"] == {"prompt": [{"role": "user", "content": "p1"}], "answer": "1"}
    info = inspect_source(DataSource(path=str(root / "kto.csv")))
    assert (info["format"], info["ok"], info["bad"]) == ("kto", 3, 1)
    assert info["reasons"] == {"'label' is not true/false": 1}
    info = inspect_source(DataSource(path=str(root / "conv.csv")))
    assert info["format"] == "messages" and info["example"]["messages"][1] == {"role": "assistant", "content": "yo"}
    info = inspect_source(DataSource(path=str(root / "prefs.parquet")))
    assert (info["format"], info["ok"], info["reasons"]) == ("preference", 1, {"chosen and rejected are the same answer": 1})

    lines = build(spec_for("pretrain", DataSource(path=str(root / "lines.txt"))), ("text",))
    assert lines.train["text"] == ["first doc", "second doc", "third doc"]
    whole = build(spec_for("pretrain", DataSource(path=str(root / "lines.txt"), format="document")), ("text",))
    assert whole.train["text"] == ["first doc\n\nsecond doc\n   \nthird doc\n"]
    kto = build(spec_for("kto", DataSource(path=str(root / "kto.csv"))), ("unpaired", "preference"))
    assert kto.train["label"] == [True, False, False]
    assert kto.train[2]["completion"] == [{"role": "assistant", "content": "c\n4"}]


def test_format_override_and_unknown_format(root):
    path = write_jsonl(root / "odd.jsonl", [{"q": "x", "a": "y"}])
    with pytest.raises(DataError) as err:
        build(spec_for("sft", DataSource(path=str(path))), ("conversation",))
    assert err.value.field == "data.sources.0.format" and "q, a" in err.value.message
    with pytest.raises(DataError) as err:
        build(spec_for("sft", DataSource(path=str(path), format="nonsense")), ("conversation",))
    assert err.value.field == "data.sources.0.format"
    # a text file read as prompts because the person said so
    path = write_jsonl(root / "p.jsonl", [{"prompt": "2+2?", "text": "ignored"}])
    bundle = build(spec_for("grpo", DataSource(path=str(path), format="prompt")), ("prompt",))
    assert bundle.train[0] == {"prompt": [{"role": "user", "content": "2+2?"}], "answer": None}


def test_paths_outside_the_allowed_roots_are_refused(tmp_path, monkeypatch):
    inside = tmp_path / "ok"
    outside = tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    write_jsonl(outside / "x.jsonl", [{"text": "secret"}])
    write_jsonl(inside / "y.jsonl", [{"text": "fine"}])
    (inside / "link.jsonl").symlink_to(outside / "x.jsonl")
    monkeypatch.setenv("STUDIO_HOSTED", "1")  # confinement is the hosted server's (studio.policy)
    monkeypatch.setenv("STUDIO_DATA_ROOTS", str(inside))
    assert inside.resolve() in allowed_roots()
    assert resolve_path(str(inside / "y.jsonl")) == (inside / "y.jsonl").resolve()
    for bad in (str(outside / "x.jsonl"), str(inside / ".." / "secret" / "x.jsonl"), str(inside / "link.jsonl"),
                "/etc/passwd", "assets/../../../etc/passwd"):
        with pytest.raises(DataError) as err:
            build(spec_for("pretrain", DataSource(path=bad)), ("text",))
        assert err.value.field == "data.sources.0.path" and "outside the allowed data folders" in err.value.message
    with pytest.raises(DataError, match="does not exist"):
        resolve_path(str(inside / "missing.jsonl"))
    monkeypatch.setenv("STUDIO_DATA_ROOTS", os.pathsep.join([str(inside), str(outside)]))
    assert build(spec_for("pretrain", DataSource(path=str(outside / "x.jsonl"))), ("text",)).train["text"] == ["secret"]


def test_parse_source_lines():
    sources = parse_source_lines("""
        # comment line
        HuggingFaceFW/fineweb-edu
        HuggingFaceFW/fineweb-2 | fra_Latn | 1.0
        HuggingFaceFW/fineweb-2 | eng_Latn | 2.0 | validation
        assets/data/corpus_train.jsonl | | 0.5
        my_upload.csv
    """)
    assert [(s.kind, s.path, s.subset, s.weight, s.split) for s in sources] == [
        ("hub", "HuggingFaceFW/fineweb-edu", None, 1.0, "train"),
        ("hub", "HuggingFaceFW/fineweb-2", "fra_Latn", 1.0, "train"),
        ("hub", "HuggingFaceFW/fineweb-2", "eng_Latn", 2.0, "validation"),
        ("file", "assets/data/corpus_train.jsonl", None, 0.5, "train"),
        ("file", "my_upload.csv", None, 1.0, "train"),
    ]
    with pytest.raises(DataError, match="line 1.*not a number"):
        parse_source_lines("a/b | sub | lots")
    with pytest.raises(DataError, match="line 2.*positive"):
        parse_source_lines("a/b\na/c | | -1")


def test_hub_path_through_a_local_dataset_folder(root, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "cache"))
    folder = root / "hubset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(6)])
    write_jsonl(folder / "test.jsonl", [{"prompt": "qt", "answer": "t"}])
    src = DataSource(kind="hub", path=str(folder))
    bundle = build(spec_for("grpo", src, eval_fraction=0.2), ("prompt",))
    assert len(bundle.train) == 6 and bundle.eval["answer"] == ["t"]  # the dataset's own test split
    assert parse_source_lines(str(folder))[0].kind == "hub"

    saved = root / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b", "c"]}),
                          "validation": datasets.Dataset.from_dict({"text": ["v"]})}).save_to_disk(str(saved))
    bundle = build(spec_for("pretrain", DataSource(kind="hub", path=str(saved)), eval_fraction=0.1), ("text",))
    assert bundle.train["text"] == ["a", "b", "c"] and bundle.eval["text"] == ["v"]
    with pytest.raises(DataError, match="no split 'nope'"):
        build(spec_for("pretrain", DataSource(kind="hub", path=str(saved), split="nope")), ("text",))

    # bad rows of a hub dataset are counted too, also when normalised in several processes
    mixed = root / "mixed"
    mixed.mkdir()
    write_jsonl(mixed / "train.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"},
                                        {"prompt": "", "chosen": "c", "rejected": "r"},
                                        {"prompt": "q", "chosen": "same", "rejected": "same"}] * 4)
    from studio.data import mix as mix_module

    monkeypatch.setattr(mix_module, "PARALLEL_FROM", 6)
    bundle = build(spec_for("dpo", DataSource(kind="hub", path=str(mixed))), ("preference",))
    rep = bundle.report[0]
    assert (len(bundle.train), rep.rows, rep.bad) == (4, 12, 8)
    assert rep.reasons == {"'prompt' is empty": 4, "chosen and rejected are the same answer": 4}
    assert rep.examples[:2] == [(2, "'prompt' is empty"), (3, "chosen and rejected are the same answer")]

    streamed = build(spec_for("grpo", DataSource(kind="hub", path=str(folder), streaming=True)), ("prompt",))
    assert isinstance(streamed.train, datasets.IterableDataset)
    assert [r["answer"] for r in streamed.train] == [str(i) for i in range(6)]
    assert streamed.report[0].rows is None and "streamed" in streamed.report[0].note


def test_unreachable_hub_dataset_names_the_source(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    spec = spec_for("pretrain", DataSource(path="assets/data/corpus_train.jsonl"),
                    DataSource(kind="hub", path="no-such-org/no-such-dataset-xyz"))
    with pytest.raises(DataError) as err:
        build(spec, ("text",))
    assert err.value.field == "data.sources.1"
    assert "no-such-org/no-such-dataset-xyz" in err.value.message and "not reachable offline" in err.value.message
