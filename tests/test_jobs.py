"""Run lifecycle through real worker subprocesses: CLI train + chat, SIGKILL, stop,
the one-job-per-device queue, and reconciling a run whose worker vanished."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from studio import jobs
from studio.metrics import read_all
from studio.presets import default_spec

pytestmark = pytest.mark.slow


def wait_for(pred, timeout=120.0, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def long_spec(name="long"):
    return default_spec().with_overrides([f"name={name}", "train.max_steps=100000", "train.eval_every=0"])


def test_cli_train_then_chat(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "studio", "--runs-dir", str(runs), "train", "quickstart",
           "--set", "train.max_steps=60"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = next(p for p in runs.iterdir() if p.is_dir())
    assert str(run_dir) in out.stdout
    losses = [r["loss"] for r in read_all(run_dir) if r.get("kind") == "train" and r.get("loss") is not None]
    assert losses[-1] <= 0.6 * losses[0], losses  # fell by at least 40%
    assert (run_dir / "final" / "model.safetensors").exists()
    chat = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs), "chat", run_dir.name,
                           "--prompt", "What is 3 + 4?", "--max-new-tokens", "8"],
                          capture_output=True, text=True, timeout=300)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip(), "the chat command printed no reply"
    listed = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(runs), "runs", "list", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout)[0]["state"] == "completed"


def test_cli_refuses_a_bad_spec_naming_the_field(tmp_path):
    out = subprocess.run([sys.executable, "-m", "studio", "--runs-dir", str(tmp_path), "train", "quickstart",
                          "--set", "model.d_model=130"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "model.d_model" in out.stderr and "divisible" in out.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was created


def test_sigkill_marks_failed_and_second_run_queues(tmp_path):
    runs = tmp_path / "runs"
    first = jobs.launch(long_spec("first"), runs)
    second = jobs.launch(long_spec("second"), runs)
    try:
        wait_for(lambda: jobs.status(first).get("state") == "running" and read_all(first), timeout=180)
        st2 = jobs.status(second)
        assert st2["state"] == "queued" and st2["queue_position"] == 1
        pgid = jobs.read_status(first)["pgid"]
        os.killpg(pgid, signal.SIGKILL)
        st = wait_for(lambda: (s := jobs.status(first)).get("state") == "failed" and s, timeout=30)
        assert "SIGKILL" in st["error"] or "signal" in st["error"]
        # the lock died with the first worker: the queued run starts by itself
        wait_for(lambda: jobs.status(second).get("state") == "running", timeout=60)
    finally:
        for run in (first, second):
            jobs.stop(run)
    for run in (first, second):
        assert jobs.group_members(jobs.read_status(run)["pgid"]) == []
        assert jobs.status(run)["state"] in ("stopped", "failed")


def test_status_of_a_vanished_worker_is_failed(tmp_path):
    """After an app restart nobody holds the Popen: status() must still tell the truth."""
    run_dir = jobs.create_run(default_spec(), tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobs.write_status(run_dir, state="running", pid=dead.pid)
    os.utime(run_dir / "status.json")
    data = json.loads((run_dir / "status.json").read_text())
    data["updated"] = time.time() - 60
    (run_dir / "status.json").write_text(json.dumps(data))
    st = jobs.status(run_dir)
    assert st["state"] == "failed" and "ended without reporting" in st["error"]


def test_run_paths_are_confined(tmp_path):
    with pytest.raises(jobs.JobError):
        jobs.run_path("../../etc", tmp_path)
    with pytest.raises(jobs.JobError):
        jobs.run_path("/etc/passwd", tmp_path)
    assert jobs.run_path("20250101-x", tmp_path).parent == tmp_path.resolve()
