"""Two processes on CPU through `accelerate launch --multi_gpu` (gloo): one metrics stream
(rank 0 only, no step twice), a status that tracks the group, and a final model that
loads and generates. Then the group resumes from its checkpoint and "stop and save"
ends both ranks at the same step (neither hangs waiting for the other)."""
from __future__ import annotations

import time

import pytest

from studio import jobs
from studio.metrics import read_all
from studio.presets import default_spec

pytestmark = pytest.mark.slow


def wait_terminal(run_dir, timeout=240):
    deadline = time.time() + timeout
    while jobs.status(run_dir).get("state") not in jobs.TERMINAL and time.time() < deadline:
        time.sleep(0.5)
    return jobs.status(run_dir)


def no_process_left(pgid) -> bool:
    gone = time.time() + 20  # status is written just before the processes exit
    while jobs.group_members(pgid) and time.time() < gone:
        time.sleep(0.2)
    return jobs.group_members(pgid) == []


@pytest.fixture
def runs(tmp_path):
    """The runs directory; whatever the test leaves running is stopped, even on failure."""
    runs = tmp_path / "runs"
    yield runs
    for run in runs.iterdir() if runs.exists() else ():
        jobs.stop(run, timeout=5)


def test_two_process_run_has_one_stream_and_a_working_model(runs):
    steps = 8
    spec = default_spec().with_overrides([
        "name=ddp", f"train.max_steps={steps}", "train.num_processes=2", "train.log_every=1",
        "train.eval_every=0", "train.batch_size=8", f"train.save_every={steps}"])
    run_dir = jobs.launch(spec, runs, env={"OMP_NUM_THREADS": "1"})
    st = wait_terminal(run_dir)
    log = (run_dir / "train.log").read_text()
    assert st["state"] == "completed", (st, log[-3000:])
    assert "accelerate.commands.launch --multi_gpu --num_processes 2" in log
    assert "[rank1]" in log or log.count("Data:") == 2, "the second rank never ran"
    assert st["num_processes"] == 2 and st["step"] == steps

    train = [r for r in read_all(run_dir) if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, steps + 1))  # one stream: no step twice
    assert len([r for r in read_all(run_dir) if r["kind"] == "summary"]) == 1
    assert train[-1]["loss"] < train[0]["loss"]
    assert no_process_left(st["pgid"])

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = run_dir / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    ids = tok("What is 2 + 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    assert all(torch.isfinite(p).all() for p in model.parameters())

    # resume the group from checkpoint-8, then stop and save mid-run
    jobs.resume(run_dir, max_steps=100_000, env={"OMP_NUM_THREADS": "1"})
    deadline = time.time() + 180
    while jobs.status(run_dir).get("step", 0) < steps + 3 and time.time() < deadline:
        time.sleep(0.3)
    assert jobs.status(run_dir)["state"] == "running", (run_dir / "train.log").read_text()[-3000:]
    st = jobs.stop(run_dir, save=True, timeout=90)
    assert st["state"] == "stopped" and no_process_left(st["pgid"]), (run_dir / "train.log").read_text()[-3000:]
    last = int(jobs.latest_checkpoint(run_dir).name.split("-")[1])
    assert last >= steps + 3
    train = [r["step"] for r in read_all(run_dir) if r["kind"] == "train"]
    assert train == sorted(set(train)) and train[-1] == last, train  # still one stream, resumed not restarted
    assert "Traceback" not in (run_dir / "train.log").read_text().split("Launching:")[-1]
