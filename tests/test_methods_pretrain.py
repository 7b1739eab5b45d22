"""Pretraining from scratch on the shipped corpus really learns the language: held-out
loss falls far below its start and below the corpus's unigram entropy; the packed
blocks hold every token; save_best_only leaves the best checkpoint in final/."""
from __future__ import annotations

import collections
import json
import math
from pathlib import Path

from safetensors.torch import load_file

from studio.metrics import read_all
from tests.conftest import spec_from

SMALL = dict(source="scratch", tokenizer="assets/tokenizer", d_model=64, n_heads=4, n_kv_heads=2,
             d_ff=176, n_layers=2, max_seq_len=64)


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained("assets/tokenizer")


def unigram_entropy(path: str) -> float:
    """Entropy (nats/token) of the corpus's token frequencies: the loss of the best
    model that ignores context. Beating it means the model uses context."""
    tok = _tokenizer()
    counts = collections.Counter()
    for line in Path(path).read_text().splitlines():
        counts.update(tok(json.loads(line)["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values())


def test_pack_keeps_every_token_in_equal_blocks():
    from datasets import Dataset

    from studio.methods.causal_lm import pack

    tok = _tokenizer()
    texts = ["The sum of 2 and 3 is 5.", "Lina walks to the river.", "Seven minus two is five."] * 7
    packed = pack(Dataset.from_dict({"text": texts}), tok, block=16)
    stream = [t for text in texts for t in tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
    assert len(packed) == len(stream) // 16 > 0
    flat = [t for row in packed["input_ids"] for t in row]
    assert flat == stream[: len(flat)]  # order kept, eos between documents, no padding
    assert all(len(r) == 16 and r == lab for r, lab in zip(packed["input_ids"], packed["labels"]))


def test_pretraining_beats_unigram_entropy_and_keeps_the_best_checkpoint(train_run):
    spec = spec_from(
        name="pretrain", model=SMALL,
        data={"sources": [{"path": "assets/data/corpus_train.jsonl"}], "eval_fraction": 0.05, "packing": True},
        method={"name": "pretrain"},
        train={"max_steps": 60, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 5, "log_every": 10,
               "eval_every": 20, "eval_steps": 4, "save_best_only": True, "seed": 0},
    )
    run = train_run(spec)
    records = read_all(run)
    first_loss = next(r["loss"] for r in records if r.get("loss") is not None)
    evals = [r for r in records if r.get("eval_loss") is not None]
    assert [r["step"] for r in evals] == [20, 40, 60]
    best = min(evals, key=lambda r: r["eval_loss"])
    entropy = unigram_entropy("assets/data/corpus_train.jsonl")
    assert first_loss > 6.0  # ~ln(1024): an untrained model guesses uniformly
    assert best["eval_loss"] < 0.6 * first_loss
    assert best["eval_loss"] < entropy - 0.3, (best["eval_loss"], entropy)
    assert all(r.get("perplexity") for r in evals)

    final = load_file(run / "final" / "model.safetensors")
    kept = load_file(run / "checkpoints" / f"checkpoint-{best['step']}" / "model.safetensors")
    for name, tensor in kept.items():
        assert (final[name] == tensor).all(), name
