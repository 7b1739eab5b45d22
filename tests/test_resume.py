"""Resume: a run with a checkpoint continues to a larger max_steps, with or without its
optimizer state; steps continue from the checkpoint and metrics.jsonl keeps appending.
With the optimizer state the result is the uninterrupted run's, to float tolerance."""
from __future__ import annotations

import time

import torch
from safetensors.torch import load_file

from studio import jobs
from studio.metrics import read_all
from tests.conftest import run_in_process, spec_from

MICRO = dict(source="scratch", tokenizer="assets/tokenizer", d_model=32, n_heads=2, n_kv_heads=1, d_ff=64,
             n_layers=1, max_seq_len=32)


def micro_spec(steps: int):
    return spec_from(
        name="resume", model=MICRO,
        data={"sources": [{"path": "assets/data/corpus_train.jsonl"}], "eval_fraction": 0.0, "packing": True,
              "max_rows": 400},
        method={"name": "pretrain"},
        # constant lr: extending max_steps then changes nothing about the first steps' schedule
        train={"max_steps": steps, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 0, "scheduler": "none",
               "log_every": 2, "save_every": 6, "seed": 0},
    )


def weights(run_dir):
    return load_file(run_dir / "final" / "model.safetensors")


def train_steps(run_dir):
    return [r["step"] for r in read_all(run_dir) if r.get("grad_norm") is not None]  # per-step train records


def resume_in_process(run_dir, max_steps: int, with_optimizer: bool):
    """What jobs.resume does, minus the subprocess."""
    from studio.spec import RunSpec

    spec = RunSpec.load(run_dir / "spec.yaml")
    spec.train.resume_from = str(jobs.latest_checkpoint(run_dir))
    spec.train.resume_optimizer = with_optimizer
    spec.train.max_steps = max_steps
    spec.save(run_dir / "spec.yaml")
    from studio.worker import run_method

    jobs.write_status(run_dir, state="running", started=time.time())
    assert run_method(spec, run_dir, lead=True) == 0
    assert jobs.read_status(run_dir)["state"] == "completed", jobs.read_status(run_dir).get("error")


def test_resume_extends_a_run_with_and_without_optimizer_state(tmp_path):
    straight = run_in_process(micro_spec(18), tmp_path / "straight")

    first = run_in_process(micro_spec(12), tmp_path / "resumed")
    assert jobs.latest_checkpoint(first).name == "checkpoint-12"
    records_before = len(read_all(first))
    proc = jobs.resume(first, max_steps=18, with_optimizer=True)  # the real path: a worker process
    assert proc.wait(timeout=600) == 0, (first / "train.log").read_text()[-2000:]
    assert jobs.status(first)["state"] == "completed"
    steps = train_steps(first)
    assert steps[: steps.index(12) + 1] == train_steps(straight)[: steps.index(12) + 1]
    assert [s for s in steps if s > 12] == [14, 16, 18]  # continues from the checkpoint's step
    assert len(read_all(first)) > records_before  # appended, not rewritten
    for name, tensor in weights(straight).items():
        assert torch.allclose(weights(first)[name], tensor, atol=1e-5), name

    fresh_opt = run_in_process(micro_spec(12), tmp_path / "weights-only")
    resume_in_process(fresh_opt, 18, with_optimizer=False)
    assert [s for s in train_steps(fresh_opt) if s > 12] == [14, 16, 18]
    assert not (fresh_opt / "resume-weights-only" / "optimizer.pt").exists()
    assert (fresh_opt / "resume-weights-only" / "model.safetensors").exists()
    # a fresh optimizer (no Adam moments) takes a different path from the same weights
    differs = any(not torch.allclose(weights(fresh_opt)[n], t, atol=1e-5) for n, t in weights(straight).items())
    assert differs
