"""#17.8: data problems are found in the launching process, before a run directory exists.

The probe's cases: every line broken, an empty file, a binary file, a 9 MB line, wrong
columns, and DPO / reward / KTO / ORPO given SFT data. Each gets its own message (never
"set the format"), jobs.launch refuses it with no run directory made, the UI's Start stays
off with the reason, and rows dropped as bad while loading are counted in train.log and
status.json ("dropped 10 of 210 rows: malformed JSON (10)")."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from studio import jobs
from studio.data import build
from studio.data.preflight import data_problems
from studio.spec import RunSpec

SFT_DATA = Path("assets/data/arith_sft_train.jsonl")


def spec_on(path: Path, method: str = "sft") -> RunSpec:
    spec = RunSpec.from_dict({"name": "pre", "data": {"sources": [{"path": str(path)}]},
                              "method": {"name": method}, "train": {"max_steps": 2}})
    if method != "sft":  # the preference and RL methods refine an existing model
        spec.model.source, spec.model.name_or_path = "pretrained", "assets/tokenizer"
    return spec


def refused(spec: RunSpec, runs: Path) -> str:
    """jobs.launch's refusal; and no run directory was made for it."""
    with pytest.raises(jobs.JobError) as err:
        jobs.launch(spec, runs)
    assert not [p for p in runs.iterdir() if not p.name.startswith(".")], "a run directory was made"
    return str(err.value)


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.fixture
def runs(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return d


def test_empty_file(tmp_path, runs):
    msg = refused(spec_on(write(tmp_path / "empty.jsonl", b"")), runs)
    assert "data.sources.0.path" in msg and "'empty.jsonl' is empty (0 bytes)" in msg
    assert "set the format" not in msg


def test_binary_file(tmp_path, runs):
    msg = refused(spec_on(write(tmp_path / "blob.jsonl", bytes(range(256)) * 64)), runs)
    assert "'blob.jsonl' is a binary file" in msg and "set the format" not in msg
    # what it looks like, when its first bytes say so
    gz = write(tmp_path / "packed.jsonl", b"\x1f\x8b\x08\x00" + os.urandom(2000))
    assert "gzip-compressed" in refused(spec_on(gz), runs)


def test_a_9mb_line(tmp_path, runs):
    big = write(tmp_path / "big.jsonl", json.dumps({"text": "x" * 9_000_000}) + "\n")
    msg = refused(spec_on(big), runs)
    assert "9.0 MB, over the 8 MB limit per row" in msg and "no readable rows in 'big.jsonl'" in msg
    assert "set the format" not in msg


def test_all_lines_broken(tmp_path, runs):
    broken = write(tmp_path / "broken.jsonl", '{"messages": [oops\n' * 20)
    msg = refused(spec_on(broken), runs)
    assert "no readable rows in 'broken.jsonl' (20 lines read, all bad: malformed JSON (20)" in msg
    assert "set the format" not in msg


def test_wrong_columns(tmp_path, runs):
    cols = write(tmp_path / "cols.jsonl", "".join(json.dumps({"foo": i, "bar": "x"}) + "\n" for i in range(20)))
    msg = refused(spec_on(cols), runs)
    assert "'cols.jsonl' has columns foo, bar, which match no known format" in msg
    assert "needs conversations (messages) or instruction/answer pairs" in msg


@pytest.mark.parametrize("method, needs", [
    ("orpo", "ORPO needs preference pairs (prompt/chosen/rejected)"),
    ("dpo", "DPO needs preference pairs (prompt/chosen/rejected)"),
    ("reward", "reward needs preference pairs (prompt/chosen/rejected)"),
    ("kto", "KTO needs completions labelled good/bad"),
])
def test_method_given_sft_data(runs, method, needs):
    spec = spec_on(SFT_DATA, method)
    assert spec.validate() == []  # the spec alone is valid: only the data disagrees
    msg = refused(spec, runs)
    assert needs in msg and "this file is chat conversations" in msg and "data.sources.0" in msg


def test_rows_that_fail_normalisation_are_named(tmp_path, runs):
    # the columns say alpaca, but no row has a usable output
    rows = "".join(json.dumps({"instruction": "say hi", "output": ""}) + "\n" for _ in range(30))
    msg = refused(spec_on(write(tmp_path / "hollow.jsonl", rows)), runs)
    assert "none of the first 30 rows of 'hollow.jsonl' can be used as conversation rows" in msg
    assert "'output' is empty (30)" in msg


def test_the_sample_is_a_sample(tmp_path):
    """A good start and a broken tail pass the preflight (the worker counts the tail),
    and the check reads only the first rows, not the whole file."""
    good = SFT_DATA.read_text().splitlines()[:300]
    path = write(tmp_path / "tail.jsonl", "\n".join(good + ["{bad"] * 5000) + "\n")
    assert data_problems(spec_on(path)) == []
    assert data_problems(spec_on(SFT_DATA)) == []


def test_the_workers_loader_gives_the_same_messages(tmp_path):
    """build() (the worker's path) says the same as the preflight, not 'set the format'."""
    from studio.data import DataError

    cases = {"empty.jsonl": b"", "broken.jsonl": b"{x\n{y\n", "blob.jsonl": b"\0\1\2" * 100}
    for name, data in cases.items():
        with pytest.raises(DataError) as err:
            build(spec_on(write(tmp_path / name, data)), ("conversation",))
        assert "set the format" not in err.value.message and name in err.value.message


def mixed_file(tmp_path: Path) -> Path:
    rows = SFT_DATA.read_text().splitlines()[:200]
    return write(tmp_path / "mixed.jsonl", "\n".join(rows + ["{bad json"] * 10) + "\n")


def test_dropped_rows_are_counted(tmp_path):
    bundle = build(spec_on(mixed_file(tmp_path)), ("conversation",))
    assert bundle.dropped_text() == "dropped 10 of 210 rows: malformed JSON (10)"
    assert bundle.dropped() == {"rows": 210, "dropped": 10, "reasons": {"malformed JSON": 10}}
    clean = build(spec_on(SFT_DATA), ("conversation",))
    assert clean.dropped_text().startswith("dropped no rows (")


def test_dropped_rows_reach_train_log_and_status(tmp_path, capsys):
    """The worker's load path (methods.common.load_data with the worker's hook) writes the
    count to status.json and prints it to stdout, which is train.log in a run."""
    from studio import worker
    from studio.methods.common import load_data
    from studio.methods.context import TrainContext

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    jobs.write_status(run_dir, state="running")
    spec = spec_on(mixed_file(tmp_path))
    ctx = TrainContext(spec=spec, run_dir=run_dir,
                       extras={"on_data": lambda bundle: worker.report_data(run_dir, bundle)})
    load_data(ctx, ("conversation",))
    assert "Data: dropped 10 of 210 rows: malformed JSON (10)" in capsys.readouterr().out
    st = jobs.read_status(run_dir)
    assert st["data_dropped"] == "dropped 10 of 210 rows: malformed JSON (10)"
    assert (st["rows_read"], st["rows_dropped"], st["dropped_reasons"]) == (210, 10, {"malformed JSON": 10})


def test_ui_start_is_refused_with_the_reason(tmp_path, monkeypatch):
    """The Train tab's edit handler keeps Start off and names the disagreement (it read
    "The spec is valid" for ORPO on SFT data), and Start itself refuses with the reason."""
    import gradio as gr

    from studio.ui import form
    from studio.ui.app import build_app

    monkeypatch.setenv("STUDIO_RUNS_DIR", str(tmp_path / "runs"))
    demo = build_app()
    # the Train tab's handlers: the ones that drive the Start button / are its click
    fns = {f.name: f for f in demo.fns.values()
           if any(getattr(c, "elem_id", None) == "start" for c in f.outputs) or f.name == "on_start"}
    on_edit, on_start = fns["on_edit"], fns["on_start"]
    paths = {form.elem_id(p): p for p in _leaf_paths(RunSpec().to_dict())} | {"data-sources": form.SOURCES_PATH}
    spec = spec_on(SFT_DATA, "orpo")
    values = []
    for comp in on_edit.inputs:
        path = paths[comp.elem_id]
        value = form._get(spec, path)
        values.append(form.sources_to_text(value) if path == form.SOURCES_PATH else value)
    markdown, start = on_edit.fn(*values)
    assert "ORPO needs preference pairs" in markdown and "The spec is valid" not in markdown
    assert start["interactive"] is False
    with pytest.raises(gr.Error, match="ORPO needs preference pairs"):
        on_start.fn(*values)


def _leaf_paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        out += _leaf_paths(v, path + ".") if isinstance(v, dict) else [path]
    return out


def test_a_folder_without_data(tmp_path, runs):
    """`data.sources.0.path=/etc` (or a model folder) failed only in the worker."""
    folder = tmp_path / "not-data"
    folder.mkdir()
    write(folder / "settings.conf", "a = 1\n")
    msg = refused(spec_on(folder), runs)
    assert "is a folder with no data files" in msg and "data.sources.0.path" in msg
    # a folder of data files is judged by its first file
    write(folder / "a.jsonl", SFT_DATA.read_text())
    assert data_problems(spec_on(folder)) == []
    assert "ORPO needs preference pairs" in str(data_problems(spec_on(folder, "orpo"))[0])


def test_data_inspect_says_why_no_row_is_readable(tmp_path, capsys):
    """`studio data inspect` (and the Data tab, through inspect_source) said only 'no
    readable rows; set the format' for a file of broken lines or one 9 MB line."""
    from studio import cli

    broken = write(tmp_path / "broken.jsonl", '{"messages": [oops\n' * 20)
    assert cli.main(["data", "inspect", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "no readable rows in 'broken.jsonl' (20 lines read, all bad: malformed JSON (20)" in out
    assert "bad x20: malformed JSON" in out and "set the format" not in out
    empty = write(tmp_path / "empty.jsonl", b"")
    assert cli.main(["data", "inspect", str(empty)]) == 2
    assert "'empty.jsonl' is empty (0 bytes)" in capsys.readouterr().err
