"""A run whose loss or gradients go non-finite fails as diverged (never `completed` with
NaN weights), or, with train.on_divergence: rollback, restores its last good state with
half the learning rate and finishes; each event is in metrics.jsonl and on the chart.

The tiny model needs an absurd learning rate to produce NaNs with Adam (~1e5: below that
it saturates but stays finite), so the rollback run shows the mechanism (two rollbacks,
each halving the rate, then a finite finish), not a model that learned."""
from __future__ import annotations

import math
import os
import time

import pytest

from studio import charts, jobs
from studio.metrics import read_all
from tests.conftest import TINY_MODEL, spec_from


def diverging_spec(**train):
    return spec_from(
        name="too-hot", model=TINY_MODEL,
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0},
        method={"name": "sft"},
        train={"max_steps": 10, "batch_size": 8, "learning_rate": 2e5, "warmup_steps": 0, "scheduler": "cosine",
               "log_every": 1, **train})


def run(spec, runs):
    from studio.worker import run_method

    run_dir = jobs.create_run(spec, runs)
    jobs.write_status(run_dir, state="running", started=time.time(), pid=os.getpid())
    code = run_method(spec, run_dir, lead=True)
    return code, run_dir, jobs.read_status(run_dir)


def weights_finite(folder) -> bool:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    return all(torch.isfinite(t).all() for t in tensors.values())


def test_a_diverged_run_fails_naming_the_step_and_keeps_only_finite_checkpoints(tmp_path):
    code, run_dir, st = run(diverging_spec(save_every=1), tmp_path / "runs")
    assert code != 0 and st["state"] == "failed", st
    assert st["error"].startswith("diverged at step "), st["error"]
    assert "nan" in st["error"] and "train.learning_rate" in st["error"] and "on_divergence" in st["error"]
    assert not (run_dir / "final").exists()
    row = jobs.list_runs(tmp_path / "runs")[0]
    assert row["state"] == "failed" and not row["has_final"]
    events = [r for r in read_all(run_dir) if r.get("kind") == "event"]
    assert [e["event"] for e in events] == ["diverged"]
    # every checkpoint left holds finite weights, and the message points at the newest
    kept = jobs.checkpoints(run_dir)
    assert kept and all(weights_finite(c) for c in kept)
    assert str(kept[-1]) in st["error"]


def test_rollback_halves_the_learning_rate_twice_and_finishes_finite(tmp_path):
    lr = 2e5
    code, run_dir, st = run(diverging_spec(learning_rate=lr, on_divergence="rollback", max_rollbacks=2),
                            tmp_path / "runs")
    assert code == 0 and st["state"] == "completed", st.get("error")
    records = read_all(run_dir)
    rollbacks = [r for r in records if r.get("event") == "rollback"]
    assert [r["learning_rate"] for r in rollbacks] == [lr / 2, lr / 4]
    assert all(r["restored_step"] < r["step"] for r in rollbacks)
    # after the k-th rollback every step runs at most at lr / 2^k (the cosine keeps decaying)
    for k, event in enumerate(rollbacks, 1):
        after = [r for r in records if r.get("kind") == "train" and r["step"] > event["step"]]
        assert after and all(r["learning_rate"] <= lr / 2**k * 1.0001 for r in after)
    train = [r for r in records if r.get("kind") == "train"]
    assert train[-1]["step"] == 10 and math.isfinite(train[-1]["loss"])
    assert weights_finite(run_dir / "final")
    fig = charts.loss_figure(records)
    marks = [s for s in fig.layout.shapes if s.type == "line"]
    assert [s.x0 for s in marks] == [r["step"] for r in rollbacks]
    assert sum("rollback" in (a.text or "") for a in fig.layout.annotations) == 2


def test_rollback_gives_up_after_max_rollbacks(tmp_path):
    code, run_dir, st = run(diverging_spec(on_divergence="rollback",
                                           max_rollbacks=1), tmp_path / "runs")
    events = [r["event"] for r in read_all(run_dir) if r.get("kind") == "event"]
    assert code != 0 and st["state"] == "failed" and events == ["rollback", "diverged"], (events, st.get("error"))
    assert "1 rollback(s)" in st["error"] and not (run_dir / "final").exists()


@pytest.mark.parametrize("field,value,fix", [("on_divergence", "retry", "stop, rollback"),
                                             ("max_rollbacks", 0, "1-20")])
def test_on_divergence_is_validated_naming_the_field(field, value, fix):
    spec = diverging_spec(**{"on_divergence": "rollback", field: value})
    problems = [str(p) for p in spec.validate()]
    assert any(f"train.{field}" in p and fix in p for p in problems), problems


def test_the_chart_marks_events_on_the_step_and_token_axes():
    records = [{"kind": "train", "step": 1, "loss": 2.0, "num_tokens": 100},
               {"kind": "train", "step": 5, "loss": 1.0, "num_tokens": 500},
               {"kind": "event", "event": "rollback", "step": 5, "learning_rate": 5e-4, "restored_step": 1},
               {"kind": "train", "step": 6, "loss": 1.5, "num_tokens": 600}]
    assert charts.events(records) == [(5, "rollback · lr 0.0005")]
    assert charts.events(records, x="tokens") == [(500, "rollback · lr 0.0005")]
    fig = charts.loss_figure(records)
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == 5
    # the event's learning rate is not a point of the learning-rate curve
    assert charts.series(records, "learning_rate") == ([], [])
