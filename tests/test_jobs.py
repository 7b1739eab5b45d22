"""Run lifecycle through real worker subprocesses: CLI train + chat, SIGKILL, stop,
the one-job-per-device queue, and reconciling a run whose worker vanished."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def log_text(run_dir: Path) -> str:
    path = run_dir / "train.log"
    return path.read_text(errors="replace") if path.exists() else ""


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
    runs.mkdir()
    # Hold the device while both start, so both workers wait on the lock together: the
    # kernel wakes either one, and the queue must still serve the first launched first.
    with open(runs / jobs.LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        first = jobs.launch(long_spec("first"), runs)
        second = jobs.launch(long_spec("second"), runs)
        wait_for(lambda: all("Waiting for the device" in log_text(r) for r in (first, second)), timeout=120)
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


# -- preflight, launch command line, CLI export (no worker: fast) ---------------------


def test_start_refuses_a_run_that_cannot_fit_with_settings_that_would(tmp_path):
    from studio.launch import fit_problems

    big = default_spec().with_overrides(["model.d_model=4096", "model.n_heads=32", "model.n_kv_heads=8",
                                         "model.d_ff=11008", "model.n_layers=32"])
    reasons = fit_problems(big, device=("cpu", 16 * 2**30))
    assert reasons and "needs about" in reasons[0] and "16.00 GiB" in reasons[0], reasons
    # each cheaper variant with its figure, marked "(fits)" exactly when it fits
    variants = reasons[1].split(": ", 1)[1].split("; ")
    assert any(v.startswith("method.regime=qlora") for v in variants), variants
    for v in variants:
        gib = float(v.split("-> about ")[1].split(" GiB")[0])
        assert v.endswith("(fits)") == (gib <= 16), v
    with pytest.raises(jobs.JobError, match="memory"):
        jobs.create_run(big.with_overrides(["model.n_layers=2000"]), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before a run directory existed
    assert fit_problems(default_spec(), device=("cpu", 8 * 2**30)) == []


def test_multi_process_command_line_and_its_checks(tmp_path):
    from studio.launch import launch_command, launch_problems

    spec = default_spec().with_overrides(["train.num_processes=2", "train.nnodes=2", "train.node_rank=1",
                                          "train.master_addr=10.0.0.1", "train.master_port=29555"])
    cmd = launch_command(spec, tmp_path / "run")
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    args = dict(zip(cmd, cmd[1:]))
    assert args["--num_processes"] == "4" and args["--num_machines"] == "2"  # total over the nodes
    assert args["--machine_rank"] == "1" and args["--main_process_ip"] == "10.0.0.1"
    assert args["--main_process_port"] == "29555"
    assert cmd[-3:] == ["-m", "studio.worker", str(tmp_path / "run")]
    zero = launch_command(spec.with_overrides(["train.distributed=zero3"]), tmp_path)
    assert ["--use_deepspeed", "--zero_stage", "3"] == zero[zero.index("--use_deepspeed"):][:3]
    assert "--use_fsdp" in launch_command(spec.with_overrides(["train.distributed=fsdp"]), tmp_path)
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        assert any("DeepSpeed" in p for p in launch_problems(spec.with_overrides(["train.distributed=zero2"])))
    bad = default_spec().with_overrides(["train.nnodes=2", "train.node_rank=2", "train.distributed=megatron"])
    fields = {p.field for p in bad.validate()}
    assert {"train.node_rank", "train.distributed"} <= fields
    fields = {p.field for p in default_spec().with_overrides(["train.nnodes=2"]).validate()}
    assert "train.master_addr" in fields


def test_cli_command_rebuilds_the_same_spec():
    import shlex

    from studio.launch import cli_command

    spec = default_spec().with_overrides(["name=my run", "train.learning_rate=1e-5", "train.max_steps=7",
                                          "model.source=pretrained", "model.name_or_path=runs/a b",
                                          "train.report_to=tensorboard",
                                          "data.sources=[{path: assets/data/corpus_train.jsonl, weight: 2}]"])
    parts = shlex.split(cli_command(spec))
    assert parts[:4] == ["python", "-m", "studio", "train"]
    sets = [parts[i + 1] for i, p in enumerate(parts) if p == "--set"]
    assert default_spec().with_overrides(sets) == spec
    assert len(sets) == 7


def test_peak_memory_reaches_the_progress_line():
    from studio.ui.train_tab import progress_html

    page = progress_html({"state": "running", "step": 3, "total": 10, "started": time.time() - 5,
                          "peak_memory_bytes": 3 * 2**30}, [])
    assert "peak memory 3.00 GiB" in page and "data-peak='3221225472'" in page
    queued = progress_html({"state": "queued", "queue_position": 2, "total": 10}, [])
    assert "position 2 in the queue" in queued and "data-queue='2'" in queued



def test_a_late_tick_of_the_previous_run_does_not_keep_its_chart(tmp_path):
    """Ticks run beside Start: one for run A that ends after Start switched to run B writes
    A's stream back; the next tick must start B's stream over, not keep A's points."""
    from studio.ui.train_tab import poll

    spec = default_spec().with_overrides(["train.max_steps=10"])
    run_a, run_b = jobs.create_run(spec, tmp_path), jobs.create_run(spec, tmp_path)
    (run_a / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "kind": "train", "loss": 2.0}) + "\n"
                                                 for i in range(1, 4)))
    jobs.write_status(run_a, state="running")
    late = poll(run_a.name, run_a.name, 0, [], "", 0, False, "step", tmp_path)  # A's tick
    watched, offset, records, shown = late[:4]
    assert (watched, len(records), shown) == (run_a.name, 3, "running") and offset > 0
    nxt = poll(run_b.name, watched, offset, records, shown, 0, False, "step", tmp_path)  # B's first tick
    assert nxt[0] == run_b.name and nxt[1] == 0 and nxt[2] == [] and nxt[3] == "queued"

def test_resume_without_optimizer_state_extends_steps_and_drops_the_optimizer(tmp_path, monkeypatch):
    from studio.methods.common import resume_checkpoint
    from studio.methods.context import TrainContext

    run_dir = jobs.create_run(default_spec().with_overrides(["train.max_steps=10"]), tmp_path)
    ckpt = run_dir / "checkpoints" / "checkpoint-10"
    ckpt.mkdir()
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"):
        (ckpt / name).write_text("x")
    jobs.write_status(run_dir, state="stopped")
    started = []
    monkeypatch.setattr(jobs, "start", lambda rd, env=None: started.append(rd))
    jobs.resume(run_dir, max_steps=25, with_optimizer=False)
    spec = jobs.RunSpec.load(run_dir / "spec.yaml")
    assert started == [run_dir] and spec.train.max_steps == 25 and jobs.status(run_dir)["total"] == 25
    assert spec.train.resume_from == str(ckpt) and spec.train.resume_optimizer is False
    weights_only = resume_checkpoint(TrainContext(spec=spec, run_dir=run_dir))
    assert sorted(p.name for p in Path(weights_only).iterdir()) == ["model.safetensors", "trainer_state.json"]
    spec.train.resume_optimizer = True
    assert resume_checkpoint(TrainContext(spec=spec, run_dir=run_dir)) == str(ckpt)


# the names the rest of the studio and the tests use as jobs.<name>, before the split
JOBS_NAMES = ("TERMINAL STOP_REQUEST LOCK_FILE JobError runs_root check_runs_dir run_path read_status write_status "
              "record_status status queue_position new_run_id preflight create_run worker_command start launch "
              "request_stop stop group_members list_runs has_final delete_run latest_checkpoint checkpoints "
              "resume RunSpec").split()


def test_jobs_is_split_by_concern_and_keeps_every_name():
    """#18: jobs.py was 445 lines; each module of the run lifecycle stays under the house's
    ~400, and every name is still importable from studio.jobs as the same object."""
    from studio import rundirs, stopping

    for module in (jobs, rundirs, stopping):
        lines = Path(module.__file__).read_text().count("\n")
        assert lines <= 400, f"{module.__name__} is {lines} lines"
    assert [n for n in JOBS_NAMES if not hasattr(jobs, n)] == []
    assert jobs.status is rundirs.status and jobs.JobError is rundirs.JobError and jobs.stop is stopping.stop
