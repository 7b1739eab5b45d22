"""An evaluation as a background job: it waits for the training queue's device lock
(runs/.device.lock) as a run does, then runs in its own process group with progress in
status.json, and Stop ends the whole group."""
from __future__ import annotations

import fcntl
import time

from studio import jobs
from studio.evaluate import background
from studio.evaluate.spec import EvalSpec, TaskSpec
from tests.test_evaluate_lmeval import model_dir  # noqa: F401  (the fixture: a tiny saved model)


def wait_for(predicate, timeout: float = 120.0, what: str = ""):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_evaluation_waits_for_the_device_then_runs_and_stops_as_a_group(model_dir, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    spec = EvalSpec(models=[str(model_dir)], tasks=[TaskSpec(name="prose", kind="loss",
                                                             data="assets/data/corpus_train.jsonl")])
    root = jobs.runs_root(runs, writable=True)
    with open(root / jobs.LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a training worker holds it
        eval_dir = background.launch(spec, runs)
        assert eval_dir.parent == root / background.LOOSE
        wait_for(lambda: "Waiting for the device" in (eval_dir / "eval.log").read_text(errors="replace"),
                 what="the evaluation to wait for the lock")
        time.sleep(1.0)
        assert background.status(eval_dir)["state"] == "queued"
    # the lock is free: it starts and reports progress
    wait_for(lambda: (background.status(eval_dir).get("done") or 0) > 0, what="progress")
    st = background.status(eval_dir)
    assert st["state"] == "running" and st["total"] == 3000 and st["done"] < 3000
    pgid = st["pgid"]
    assert jobs.group_members(pgid)
    st = background.stop(eval_dir)
    assert st["state"] == "stopped"
    assert not jobs.group_members(pgid)
    assert not (eval_dir / "summary.json").exists()
    assert [r["state"] for r in background.list_evals(runs)] == ["stopped"]
