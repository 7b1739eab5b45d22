"""#17.9 and #25.8: the CLI's last tracebacks, with the probe's inputs, and global options
after the subcommand.

A YAML syntax error names file, line and column; `studio chat /etc` says it is not a
model; `runs delete` on a symlinked run removes the link only (the studio deletes what it
owns under the runs folder; following the link would delete wherever it points) and
keeps the target; `max_steps=-5` and its class (negative or zero where impossible,
numbers that are not finite) are refused naming the field; `studio train X --runs-dir D`
works as typed. `studio train` ends, with the reason, when the worker is gone and its
status.json is corrupt (it polled forever: corrupt is no end state)."""
from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

from studio import cli, jobs


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture
def no_worker(monkeypatch):
    """jobs.start without a worker: the run is marked completed at once, so `train`
    covers everything up to the launch (validation, preflight, the run directory)."""
    def fake_start(run_dir, env=None):
        jobs.write_status(run_dir, state="completed", step=0, total=0)

    monkeypatch.setattr(jobs, "start", fake_start)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  max_steps: [1, 2\n  batch_size: 4\n")
    code, _, err = run_cli(["train", bad], capsys)
    assert code == 2
    assert str(bad) in err and "YAML syntax error at line 4, column 13: expected ',' or ']', but got ':'" in err
    # a tab, the other common slip
    bad.write_text("name: x\ntrain:\n\tmax_steps: 5\n")
    code, _, err = run_cli(["train", bad], capsys)
    assert code == 2 and "line 3, column 1" in err and "indent with spaces, not tabs" in err


def test_spec_files_that_are_not_yaml_text(tmp_path, capsys):
    utf16 = tmp_path / "s.yaml"
    utf16.write_bytes("name: x\n".encode("utf-16"))
    code, _, err = run_cli(["train", utf16], capsys)
    assert code == 2 and "not UTF-8 text" in err
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    code, _, err = run_cli(["train", folder], capsys)
    assert code == 2 and "is a folder" in err
    code, _, err = run_cli(["train", tmp_path / "missing.yaml"], capsys)
    assert code == 2 and "does not exist" in err


def test_set_value_that_is_not_yaml(capsys, tmp_path):
    code, _, err = run_cli(["--runs-dir", tmp_path, "train", "quickstart", "--set", "train.max_steps=[1"], capsys)
    assert code == 2 and "--set train.max_steps" in err and "YAML syntax error" in err


def test_chat_on_a_folder_that_is_no_model(capsys):
    code, _, err = run_cli(["chat", "/etc", "--prompt", "hi"], capsys)
    assert code == 2 and err.startswith("error: ") and "'/etc' has neither config.json" in err


def make_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text("name: kept\n")
    (folder / "status.json").write_text(json.dumps({"state": "completed"}))
    return folder


def test_runs_delete_on_a_symlinked_run_removes_the_link_only(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    target = make_run(tmp_path / "elsewhere" / "big-run")
    (runs / "linked").symlink_to(target)
    code, out, _ = run_cli(["--runs-dir", runs, "runs", "delete", "linked"], capsys)
    assert code == 0 and "removed the link" in out and str(target) in out
    assert not (runs / "linked").exists() and not (runs / "linked").is_symlink()
    assert (target / "spec.yaml").exists()  # the files the link pointed to are kept
    # the same by path, and a link whose target is gone
    (runs / "again").symlink_to(target)
    (runs / "dangling").symlink_to(tmp_path / "nothing")
    for name in ("again", "dangling"):
        code, out, _ = run_cli(["--runs-dir", runs, "runs", "delete", runs / name], capsys)
        assert code == 0 and not (runs / name).is_symlink()
    assert (target / "status.json").exists()
    # a real run is still deleted, and a missing one is a clean error
    make_run(runs / "plain")
    assert run_cli(["runs", "delete", "plain", "--runs-dir", runs], capsys)[0] == 0 and not (runs / "plain").exists()
    code, _, err = run_cli(["runs", "delete", "ghost", "--runs-dir", runs], capsys)
    assert code == 2 and "No run 'ghost'" in err


@pytest.mark.parametrize("assignment, field", [
    ("train.max_steps=-5", "train.max_steps"),
    ("train.epochs=-1", "train.epochs"),
    ("train.seed=-1", "train.seed"),
    ("data.seed=-3", "data.seed"),
    ("train.eval_steps=-2", "train.eval_steps"),
    ("train.max_steps=1e400", "train.max_steps"),
    ("train.learning_rate=.inf", "train.learning_rate"),
    ("train.warmup_steps=.inf", "train.warmup_steps"),
    ("model.rope_theta=.inf", "model.rope_theta"),
])
def test_impossible_numbers_are_refused_by_field(assignment, field, tmp_path, capsys, no_worker):
    runs = tmp_path / "runs"
    code, _, err = run_cli(["--runs-dir", runs, "train", "quickstart", "--set", assignment], capsys)
    assert code == 2 and field in err, err
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("assignments, field", [
    (["method.name=ppo", "method.mini_batch_size=0"], "method.mini_batch_size"),
    (["method.name=grpo", "method.top_k=-1"], "method.top_k"),
    (["method.name=ppo", "method.kl_coef=-0.1"], "method.kl_coef"),
    (["method.name=ppo", "method.vf_coef=-1"], "method.vf_coef"),
    (["method.regime=freeze", "method.freeze_trainable_layers=-1"], "method.freeze_trainable_layers"),
])
def test_method_numbers_of_the_same_class(assignments, field):
    from studio.spec import RunSpec

    spec = RunSpec.from_dict({"model": {"source": "pretrained", "name_or_path": "x"}}).with_overrides(assignments)
    assert field in [p.field for p in spec.validate()]


def test_runs_dir_after_the_subcommand(tmp_path, capsys, no_worker):
    runs = tmp_path / "typed-after"
    code, out, _ = run_cli(["train", "quickstart", "--set", "train.max_steps=2", "--runs-dir", runs], capsys)
    assert code == 0 and f"Run directory: {runs}" in out
    made = [p for p in runs.iterdir() if (p / "spec.yaml").exists()]
    assert len(made) == 1
    code, out, _ = run_cli(["runs", "list", "--json", "--runs-dir", runs], capsys)
    assert code == 0 and [r["run_id"] for r in json.loads(out)] == [made[0].name]
    code, out, _ = run_cli(["runs", "show", made[0].name, "--runs-dir", runs], capsys)
    assert code == 0 and json.loads(out)["state"] == "completed"
    # before the subcommand as ever, and not reset by its absence after it
    code, out, _ = run_cli(["--runs-dir", runs, "runs", "list", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 1


def test_every_global_option_is_accepted_by_every_subcommand():
    parser = cli.build_parser()
    globals_ = [o for a in parser._actions if a.option_strings and a.dest != "help" for o in a.option_strings]
    assert "--runs-dir" in globals_
    pending = list(cli._subparsers(parser))
    assert pending
    while pending:
        sp = pending.pop()
        pending.extend(cli._subparsers(sp))
        for option in globals_:
            assert option in sp._option_string_actions, (sp.prog, option)


def test_train_ends_when_the_worker_is_gone_and_its_status_is_corrupt(tmp_path, capsys, monkeypatch):
    """A worker that dies while its status.json is damaged beyond rewriting (here a folder
    in its place, so neither the worker nor the launcher's reaper can record the end):
    `studio train` stops polling once no process of the run is left, and says why."""
    real_start = jobs.start

    def short_worker(run_dir):  # a stand-in worker: its command line names the run, as the real one does
        return [sys.executable, "-c", "import time; time.sleep(1)", "-m", "studio.worker", str(run_dir)]

    def start_then_damage(run_dir, env=None):
        proc = real_start(run_dir, env)
        status = run_dir / "status.json"
        status.unlink()
        (status / "x").mkdir(parents=True)
        return proc

    monkeypatch.setattr(jobs, "worker_command", short_worker)
    monkeypatch.setattr(jobs, "start", start_then_damage)
    runs = tmp_path / "runs"
    result = {}
    poll = threading.Thread(daemon=True, target=lambda: result.update(
        code=cli.main(["--runs-dir", str(runs), "train", "quickstart", "--set", "train.max_steps=2"])))
    poll.start()
    poll.join(30)
    if poll.is_alive():  # the old poll: mend the status so its loop ends, then fail
        status = next(runs.iterdir()) / "status.json"
        shutil.rmtree(status)
        jobs.write_status(status.parent, state="failed")
        poll.join(5)
        pytest.fail("studio train kept polling a corrupt run whose worker had ended")
    err = capsys.readouterr().err
    assert result["code"] == 1
    assert "The run's status is corrupt: status.json cannot be read (Is a directory)" in err
    assert "training process has ended" in err
