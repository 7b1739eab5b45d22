"""Distillation's loss mask (#25 leftover): on a chat template without {% generation %}
marks it once trained on the whole conversation (system prompt and user turns included)
without a word; now it takes SFT's mask (studio.data.chat_mask: prefix rendering), says so
in train.log, and refuses a template where the assistant's turns cannot be found."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from studio.data.errors import DataError
from tests.chat_templates import family_model_dir, family_tokenizer
from tests.conftest import run_in_process, spec_from
from tests.test_chat_mask import COUNTING, CONVERSATION, TRAINED


def _spec(folder, steps=2):
    return spec_from(
        name="distill-mask", model={"source": "pretrained", "name_or_path": str(folder), "max_seq_len": 256},
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0, "max_rows": 8},
        method={"name": "distill", "regime": "full", "teacher": str(folder)},
        train={"max_steps": steps, "batch_size": 2, "learning_rate": 1e-3, "log_every": 1, "warmup_steps": 0,
               "eval_every": 0, "save_every": 0})


def test_distill_trains_only_the_assistant_turns_on_a_template_without_marks(tmp_path, monkeypatch, capsys):
    import studio.methods.distill as distill

    folder = family_model_dir("qwen2.5", tmp_path / "qwen")
    tok = family_tokenizer("qwen2.5")
    seen = []
    real = distill.distill_losses

    def record(student_logits, teacher_logits, labels, temperature):
        seen.append(labels.clone())
        return real(student_logits, teacher_logits, labels, temperature)

    monkeypatch.setattr(distill, "distill_losses", record)
    run_in_process(_spec(folder), tmp_path / "runs")
    out = capsys.readouterr().out
    assert "Loss mask: assistant tokens only (data.assistant_only_loss), found by prefix rendering" in out
    assert seen, "the distillation loss never ran"
    for batch in seen:
        for labels in batch:
            trained = tok.decode([t for t in labels.tolist() if t != -100])
            # the answers (digits) and each turn's end, never the default system prompt or the question
            assert trained and "You are Qwen" not in trained and "<|im_start|>" not in trained
            assert set(trained.replace("<|im_end|>", "").strip()) <= set("0123456789-\n ")
            assert (labels != -100).sum() < (labels != tok.pad_token_id).sum() / 2


def test_distill_mask_matches_sft_token_by_token(tmp_path):
    import datasets

    from studio.methods.distill import _assistant_only
    from studio.spec import RunSpec

    tok = family_tokenizer("qwen2.5")
    data = SimpleNamespace(kind="conversation", train=datasets.Dataset.from_list([{"messages": CONVERSATION}]),
                           eval=None)
    train, _ = _assistant_only(data, tok, RunSpec.from_dict({"model": {"max_seq_len": 256}}))
    assert tok.decode([t for t in train[0]["labels"] if t != -100]) == "".join(TRAINED["qwen2.5"])


def test_distill_refuses_a_template_it_cannot_split(tmp_path):
    import datasets

    from studio.methods.distill import _assistant_only
    from studio.spec import RunSpec

    tok = family_tokenizer("qwen2.5")
    tok.chat_template = COUNTING
    data = SimpleNamespace(kind="conversation", train=datasets.Dataset.from_list([{"messages": CONVERSATION}]),
                           eval=None)
    with pytest.raises(DataError) as err:
        _assistant_only(data, tok, RunSpec())
    assert err.value.field == "data.assistant_only_loss" and "data.assistant_only_loss: false" in err.value.message
