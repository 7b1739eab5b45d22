"""Held-out evaluation of the arithmetic chat task, shared by the method tests:
greedy exact-match accuracy and assistant-only loss."""
from __future__ import annotations

import json
from pathlib import Path

import torch

TEST_FILE = "assets/data/arith_sft_test.jsonl"


def test_items(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in Path(TEST_FILE).read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def load(path, regime: str = "full"):
    """A saved model or adapter (on its base) through the studio's own loader."""
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import MethodSpec, ModelSpec

    spec = ModelSpec(source="pretrained", name_or_path=str(path))
    tok = load_tokenizer(spec)
    model = build_or_load(spec, tok, MethodSpec(regime=regime) if regime == "qlora" else None)
    model.eval()
    return model, tok


def accuracy(model, tok, items, max_new_tokens: int = 4) -> float:
    from studio.inference import stop_token_ids
    from studio.tasks import is_correct

    prompts = [tok.apply_chat_template(it["messages"][:-1], tokenize=False, add_generation_prompt=True) for it in items]
    tok.padding_side = "left"
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_token_ids(tok), pad_token_id=tok.pad_token_id)
    replies = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(is_correct(r, it["answer"]) for r, it in zip(replies, items)) / len(items)


def encode(tok, items):
    """input_ids, attention_mask and labels that score only the assistant's tokens."""
    rows = [tok.apply_chat_template(it["messages"], tokenize=True, return_dict=True,
                                    return_assistant_tokens_mask=True) for it in items]
    width = max(len(r["input_ids"]) for r in rows)
    pad = tok.pad_token_id
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        mask[i, :n] = 1
        keep = torch.tensor(r["assistant_masks"]).bool()
        labels[i, :n] = torch.where(keep, ids[i, :n], torch.tensor(-100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def heldout_loss(model, tok, items) -> float:
    with torch.no_grad():
        return float(model(**encode(tok, items)).loss)
