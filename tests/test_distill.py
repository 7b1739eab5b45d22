"""Distillation: the loss is alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE,
its two parts reach metrics.jsonl, and a small student trained on the corpus at least
halves its KL to the teacher on held-out text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from studio.methods.distill import distill_losses, kl_to_teacher
from studio.metrics import read_all
from tests.conftest import spec_from

STUDENT = dict(source="scratch", tokenizer="assets/tokenizer", d_model=64, n_heads=4, n_kv_heads=2, d_ff=176,
               n_layers=2, max_seq_len=64)


def test_distill_loss_matches_the_formula():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    labels[0, :3] = -100
    kl, ce = distill_losses(s, t, labels, temperature=2.0)
    keep = labels[:, 1:] != -100
    ps, pt = torch.log_softmax(s[:, :-1][keep] / 2, -1), torch.log_softmax(t[:, :-1][keep] / 2, -1)
    by_hand = (pt.exp() * (pt - ps)).sum(-1).mean() * 4
    assert kl == pytest.approx(float(by_hand), rel=1e-5)
    assert ce == pytest.approx(float(torch.nn.functional.cross_entropy(s[:, :-1][keep], labels[:, 1:][keep])), rel=1e-5)
    same, _ = distill_losses(t, t, labels, temperature=3.0)
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def held_out_batch(tok, n: int = 32, length: int = 64):
    texts = [json.loads(line)["text"] for line in Path("assets/data/corpus_test.jsonl").read_text().splitlines()[:n]]
    batch = tok(texts, return_tensors="pt", padding="max_length", truncation=True, max_length=length,
                add_special_tokens=False)
    return batch["input_ids"], batch["attention_mask"]


def test_student_halves_its_kl_to_the_teacher(base_model, train_run):
    from studio.model import build_model, load_tokenizer
    from studio.spec import ModelSpec

    spec = spec_from(
        name="distill", model=STUDENT,
        data={"sources": [{"path": "assets/data/corpus_train.jsonl"}], "eval_fraction": 0.0, "packing": True},
        # the teacher as a run directory, the way a person picks an earlier run
        method={"name": "distill", "regime": "full", "teacher": str(base_model.parent),
                "distill_temperature": 2.0, "distill_alpha": 0.5},
        train={"max_steps": 40, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 4, "log_every": 5,
               "seed": 0},
    )
    tok = load_tokenizer(ModelSpec(source="pretrained", name_or_path=str(base_model)))
    teacher, _ = _load(base_model)
    ids, mask = held_out_batch(tok)
    torch.manual_seed(0)
    fresh = build_model(ModelSpec(**STUDENT), tok).eval()
    before = kl_to_teacher(fresh, teacher, ids, mask)

    run = train_run(spec)
    student, _ = _load(run / "final")
    after = kl_to_teacher(student, teacher, ids, mask)
    assert after <= 0.5 * before, (before, after)

    train = [r for r in read_all(run) if r.get("kind") != "eval" and r.get("loss_kl") is not None]
    assert len(train) >= 5 and all(r.get("loss_ce") is not None for r in train)
    for r in train:  # the logged loss is the logged parts mixed by alpha
        if r.get("loss") is not None:
            assert r["loss"] == pytest.approx(0.5 * r["loss_kl"] + 0.5 * r["loss_ce"], rel=1e-3)
    assert train[-1]["loss_kl"] < train[0]["loss_kl"]


def _load(path):
    from tests.sft_eval import load

    return load(path)


def test_a_teacher_with_another_tokenizer_is_refused(base_model, tmp_path):
    from studio.methods.context import TrainContext
    from studio.methods.distill import load_teacher
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained("assets/tokenizer")
    other.add_tokens(["<extra-token>"])
    spec = spec_from(method={"name": "distill", "teacher": str(base_model)})
    with pytest.raises(ValueError, match="method.teacher: .* different tokenizer"):
        load_teacher(TrainContext(spec=spec, run_dir=tmp_path), other)
