"""One bad file must not break everything, and a run that could not finish never looks
finished (#17.5-7): a half-written final/, status.json of the wrong shape, metrics lines
that are not records, a run directory that turns read-only, an unusable --runs-dir."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio import cli, jobs
from studio.metrics import MetricsTail
from studio.spec import RunSpec
from tests.conftest import TINY_MODEL, spec_from

ROOT = Path(__file__).resolve().parent.parent
# Root ignores permission bits; the read-only cases run their process as root without the
# capabilities that override them (setpriv), so a mode 555 folder stops it as it would a user.
DROP = "-dac_override,-dac_read_search,-fowner"
AS_USER = ["setpriv", f"--bounding-set={DROP}", f"--inh-caps={DROP}"] if os.geteuid() == 0 else []
needs_perms = pytest.mark.skipif(bool(AS_USER) and not shutil.which("setpriv"),
                                 reason="running as root without setpriv: permission bits cannot be tested")


def make_run(runs: Path, name: str, status: bytes | None, metrics: bytes = b"") -> Path:
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    RunSpec(name=name).save(run_dir / "spec.yaml")
    if status is not None:
        (run_dir / "status.json").write_bytes(status)
    (run_dir / "metrics.jsonl").write_bytes(metrics)
    return run_dir


def good_run(runs: Path) -> Path:
    return make_run(runs, "20260101-000000-good", json.dumps({"state": "completed", "step": 3, "total": 3}).encode(),
                    b'{"step": 3, "kind": "train", "loss": 1.5}\n')


# -- #17.5: a half-written final/ is never a model --------------------------------------


def test_a_final_save_that_dies_leaves_no_final_and_a_failed_run(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    from studio.worker import run_method

    def dies_after_config(self, folder, **kwargs):
        self.config.save_pretrained(folder)  # what a full disk leaves: config.json, no weights
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "model.safetensors"))

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", dies_after_config)
    spec = spec_from(name="disk-full", model=TINY_MODEL,
                     data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0},
                     method={"name": "sft"}, train={"max_steps": 2, "batch_size": 4, "log_every": 1})
    run_dir = jobs.create_run(spec, tmp_path / "runs")
    jobs.write_status(run_dir, state="running", started=time.time(), pid=os.getpid())
    assert run_method(spec, run_dir, lead=True) != 0
    st = jobs.read_status(run_dir)
    assert st["state"] == "failed" and "No space left" in st["error"]
    assert not (run_dir / "final").exists()
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".final")] == []  # temp removed
    row = jobs.list_runs(tmp_path / "runs")[0]
    assert row["state"] == "failed" and row["has_final"] is False


def test_a_final_with_only_config_is_not_listed_as_a_model(tmp_path):
    run_dir = good_run(tmp_path)
    (run_dir / "final").mkdir()
    (run_dir / "final" / "config.json").write_text("{}")
    assert jobs.list_runs(tmp_path)[0]["has_final"] is False
    (run_dir / "final" / "model.safetensors").write_bytes(b"x")
    assert jobs.list_runs(tmp_path)[0]["has_final"] is True


def test_a_checkpoint_that_died_mid_save_is_not_resumed_from(tmp_path):
    run_dir = good_run(tmp_path)
    whole, torn = run_dir / "checkpoints" / "checkpoint-4", run_dir / "checkpoints" / "checkpoint-8"
    for ckpt in (whole, torn):
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"x")
    (whole / "trainer_state.json").write_text("{}")  # the Trainer writes it last
    assert jobs.checkpoints(run_dir) == [whole] and jobs.latest_checkpoint(run_dir) == whole


def test_an_export_that_dies_leaves_no_folder(tmp_path, monkeypatch):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel

    from studio import export

    model_dir = tmp_path / "model"
    tok = AutoTokenizer.from_pretrained("assets/tokenizer")
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)

    def dies(self, folder, **kwargs):
        self.config.save_pretrained(folder)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", dies)
    out = tmp_path / "exported"
    with pytest.raises(OSError):
        export.merge(str(model_dir), out)
    assert not out.exists() and not list(tmp_path.glob(".exported*"))


# -- #17.6: status.json / metrics.jsonl of the wrong shape --------------------------------

BAD_STATUS = {
    "list": b"[1, 2, 3]",
    "null": b"null",
    "pid-text": json.dumps({"state": "running", "pid": "abc", "updated": 0}).encode(),
    "non-utf8": b'{"state": "completed", "error": "\xff\xfe"}',
    "epoch-text": json.dumps({"state": "running", "epoch": "half"}).encode(),
    "huge-pid": json.dumps({"state": "running", "pid": 10**30}).encode(),
    "not-json": b"{state: running",
}
BAD_METRICS = {"list": b"[1, 2]\n", "string": b'"loss"\n', "number": b"42\n", "loss-text": b'{"step": 1, "loss": "x"}\n'}


@pytest.fixture
def corrupt_runs(tmp_path):
    runs = tmp_path / "runs"
    good_run(runs)
    # the right shape with nulls where readers expect numbers: read as absent, not as None
    make_run(runs, "20230101-000000-nulls", json.dumps(
        {"state": "completed", "num_processes": None, "step": None, "epoch": None, "ended": None}).encode())
    for i, (name, raw) in enumerate(BAD_STATUS.items()):
        make_run(runs, f"20250101-00000{i}-{name}", raw)
    for i, (name, raw) in enumerate(BAD_METRICS.items()):
        make_run(runs, f"20240101-00000{i}-metrics-{name}", json.dumps({"state": "completed"}).encode(),
                 raw + b'{"step": 2, "kind": "train", "loss": 0.5}\n')
    return runs


def test_list_and_show_mark_each_bad_status_corrupt_with_the_reason(corrupt_runs, capsys):
    rows = {r["run_id"].split("-", 2)[2]: r for r in jobs.list_runs(corrupt_runs)}
    assert rows["good"]["state"] == "completed" and rows["good"]["last_loss"] == 1.5
    assert rows["nulls"]["state"] == "completed" and rows["nulls"]["step"] == 0
    for name in BAD_STATUS:
        assert rows[name]["state"] == "corrupt", (name, rows[name])
        assert "status.json" in rows[name]["error"]
    assert "pid 'abc' is not a process id" in rows["pid-text"]["error"]
    assert "not UTF-8" in rows["non-utf8"]["error"]
    for name in BAD_METRICS:  # the bad line is skipped, the good one read
        assert rows[f"metrics-{name}"]["last_loss"] == 0.5
    assert cli.main(["--runs-dir", str(corrupt_runs), "runs", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("corrupt") == len(BAD_STATUS) and "completed" in listed
    for run_dir in corrupt_runs.iterdir():
        assert cli.main(["--runs-dir", str(corrupt_runs), "runs", "show", run_dir.name]) == 0
        json.loads(capsys.readouterr().out)


def ui_function(name: str):
    """A Train tab function wherever the tab's modules keep it (it is being split in two)."""
    import importlib

    for module in ("studio.ui.train_tab", "studio.ui.train_view", "studio.ui.train_handlers"):
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise AssertionError(f"no Train tab function {name}")


def test_the_ui_history_poll_and_app_start_survive_corrupt_runs(corrupt_runs):
    from studio.ui import app

    history = ui_function("history_rows")(corrupt_runs)
    assert sum("corrupt" in row for row in history) == len(BAD_STATUS)
    for run_dir in corrupt_runs.iterdir():
        out = ui_function("poll")(run_dir.name, "", 0, [], "", 0.6, False, "step", corrupt_runs)
        assert any(str(jobs.status(run_dir)["state"]) in str(o) for o in out)
    demo = app.build_app(app.AppSettings(runs_dir=str(corrupt_runs)))
    assert demo is not None


# -- #17.7: read-only run dirs and unusable --runs-dir ----------------------------------


def test_a_runs_dir_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    not_a_dir = tmp_path / "runs"
    not_a_dir.write_text("")
    for argv in (["runs", "list"], ["train", "quickstart"]):
        assert cli.main(["--runs-dir", str(not_a_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert "is not a folder" in err and "--runs-dir" in err and "Traceback" not in err


def _cli(args, **kw):
    return subprocess.run([*AS_USER, sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


@needs_perms
def test_an_unwritable_runs_dir_is_a_clear_error_before_work(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    out = _cli(["--runs-dir", str(runs), "train", "quickstart", "--set", "train.max_steps=2"])
    assert out.returncode == 2 and "not writable" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert list(runs.iterdir()) == []
    assert _cli(["--runs-dir", str(runs), "runs", "list"]).returncode == 0  # reading it is fine


@needs_perms
def test_a_run_dir_turned_read_only_mid_run_records_the_real_cause(tmp_path):
    runs = tmp_path / "runs"
    spec = spec_from(name="ro", model=TINY_MODEL,
                     data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0},
                     method={"name": "sft"}, train={"max_steps": 100000, "batch_size": 4, "log_every": 1})
    run_dir = jobs.create_run(spec, runs)
    log = open(run_dir / "train.log", "ab")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*AS_USER, *jobs.worker_command(run_dir)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=env, start_new_session=True)
    log.close()
    try:
        deadline = time.time() + 240
        while jobs.read_status(run_dir).get("step", 0) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert jobs.read_status(run_dir)["state"] == "running", (run_dir / "train.log").read_text()[-2000:]
        run_dir.chmod(0o555)  # the worker can no longer create status.json's temp file
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    assert code != 0
    assert jobs.read_status(run_dir)["state"] == "running"  # all the worker could not write
    # a reader that cannot write either (the CLI as the same user) reports the real cause
    shown = _cli(["--runs-dir", str(runs), "runs", "show", run_dir.name])
    assert shown.returncode == 0, shown.stderr
    st = json.loads(shown.stdout)
    assert st["state"] == "failed" and "Permission denied" in st["error"] and "signal" not in st["error"], st
    listed = _cli(["--runs-dir", str(runs), "runs", "list"])
    assert listed.returncode == 0 and "failed" in listed.stdout, listed.stderr


# -- fuzz: any file content gives a clean result, never a traceback -----------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=8)
status_like = st.fixed_dictionaries({}, optional={
    k: json_values for k in ("state", "pid", "pgid", "step", "total", "epoch", "started", "ended", "updated",
                             "error", "traceback", "peak_memory_bytes", "num_processes")})
contents = (st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())
            | status_like.map(lambda v: json.dumps(v).encode())
            | st.sampled_from(["running", "completed", "queued"]).flatmap(
                lambda s: status_like.map(lambda v: json.dumps({**v, "state": s}).encode())))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=contents, lines=st.lists(contents, max_size=4))
def test_fuzz_status_and_metrics_files_read_cleanly(tmp_path_factory, status, lines):
    runs = tmp_path_factory.mktemp("fuzz")
    run_dir = make_run(runs, "20250101-000000-fuzz", status, b"\n".join(x.replace(b"\n", b" ") for x in lines) + b"\n")
    st_ = jobs.status(run_dir)
    assert isinstance(st_, dict) and isinstance(st_.get("state"), str)
    [row] = jobs.list_runs(runs)
    assert row["state"] == jobs.status(run_dir)["state"]
    records = MetricsTail(run_dir / "metrics.jsonl").read_new()
    assert all(isinstance(r, dict) for r in records)
    for argv in (["runs", "list"], ["runs", "list", "--json"], ["runs", "show", run_dir.name]):
        assert cli.main(["--runs-dir", str(runs), *argv]) == 0
    ui_function("history_rows")(runs)
    ui_function("progress_html")(st_, records)
    ui_function("figures")(records, 0.6, False, "step")
    ui_function("poll")(run_dir.name, "", 0, [], "", 0.6, False, "step", runs)
