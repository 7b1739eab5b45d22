"""SFT's own tokenising (studio.methods.sft_tokens) must give trl's SFTTrainer exactly the
rows its own preparation would: the same ids, the same labels, the same rows dropped."""
from __future__ import annotations

import datasets
import pytest

from studio.data import mix as mix_module
from studio.methods.common import has_generation_marks
from studio.methods.sft_tokens import tokenise_chats
from tests.conftest import TINY_MODEL

MAX_LEN = 48


def chats() -> list[dict]:
    rows = []
    for i in range(40):
        turns = [{"role": "user", "content": f"What is {i} + {i * 3}?"},
                 {"role": "assistant", "content": f"{i} + {i * 3} = {i * 4}."}]
        if i % 3 == 0:
            turns = [{"role": "system", "content": "Answer briefly."}] + turns
        if i % 4 == 1:  # two exchanges
            turns += [{"role": "user", "content": "And doubled?"}, {"role": "assistant", "content": str(i * 8)}]
        if i % 7 == 2:  # a long answer that max_length cuts
            turns[-1]["content"] = " ".join(f"step {k}" for k in range(40))
        if i % 10 == 5:  # the question alone fills max_length: no assistant token is left
            turns[-2]["content"] = "Please think about this. " * 20
        rows.append({"messages": turns})
    return rows


@pytest.fixture(scope="module")
def tok_and_model():
    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(**TINY_MODEL)
    tokenizer = load_tokenizer(spec)
    assert has_generation_marks(tokenizer), "the shipped template should mark assistant turns"
    return tokenizer, build_or_load(spec, tokenizer)


def trl_rows(tokenizer, model, ds, assistant_only: bool, tmp_path) -> list[tuple]:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path), max_length=MAX_LEN, assistant_only_loss=assistant_only,
                     report_to=[], use_cpu=True)
    prepared = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer).train_dataset
    return [(r["input_ids"], r["labels"]) for r in prepared]


@pytest.mark.parametrize("assistant_only", [True, False])
def test_rows_equal_trls_own_preparation(tok_and_model, tmp_path, assistant_only):
    tokenizer, model = tok_and_model
    ds = datasets.Dataset.from_list(chats())
    want = trl_rows(tokenizer, model, ds, assistant_only, tmp_path)
    ours = tokenise_chats(ds, tokenizer, MAX_LEN, assistant_only)
    assert ours.column_names == ["input_ids", "labels"]
    assert [(r["input_ids"], r["labels"]) for r in ours] == want
    if assistant_only:  # the cases above are really exercised
        assert len(want) < len(ds), "a row with no assistant token within max_length should be dropped"
        assert any(-100 in labels for _, labels in want) and any(len(ids) == MAX_LEN for ids, _ in want)


def test_parallel_and_streamed_maps_give_the_same_rows(tok_and_model, monkeypatch):
    tokenizer, _ = tok_and_model
    ds = datasets.Dataset.from_list(chats())
    one = [(r["input_ids"], r["labels"]) for r in tokenise_chats(ds, tokenizer, MAX_LEN, True)]
    monkeypatch.setattr(mix_module, "PARALLEL_FROM", 10)  # 40 rows: now in worker processes
    assert mix_module.map_procs(ds) is not None
    parallel = tokenise_chats(ds, tokenizer, MAX_LEN, True)
    assert [(r["input_ids"], r["labels"]) for r in parallel] == one
    streamed = tokenise_chats(ds.to_iterable_dataset(), tokenizer, MAX_LEN, True)
    assert [(r["input_ids"], r["labels"]) for r in streamed] == one


@pytest.mark.parametrize("data", [
    {},  # all_exhausted oversamples the smaller file: its rows are tokenised once, then blended
    {"stopping_strategy": "first_exhausted"},  # leaves rows out: the blend itself is tokenised
    {"max_rows": 50},
])
def test_tokenising_before_the_blend_gives_the_blend_of_tokenised_rows(tok_and_model, tmp_path, data):
    """build(prepare=...) must equal tokenising build()'s blend: same rows, same order."""
    import json

    from studio.data import build
    from studio.methods.sft_tokens import drop_untrained
    from studio.spec import DataSource, RunSpec

    tokenizer, _ = tok_and_model
    rows = chats()
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path, part in zip(paths, (rows[:30], rows[30:])):  # 30 and 10 rows
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
    spec = RunSpec()
    spec.data.sources = [DataSource(path=str(p)) for p in paths]
    spec.data.eval_fraction = 0.1
    for k, v in data.items():
        setattr(spec.data, k, v)
    plain = build(spec, ("conversation",))
    prepared = build(spec, ("conversation",),
                     prepare=lambda ds: tokenise_chats(ds, tokenizer, MAX_LEN, True, keep_untrained=True))
    want = tokenise_chats(plain.train, tokenizer, MAX_LEN, True)
    assert [(r["input_ids"], r["labels"]) for r in drop_untrained(prepared.train)] == \
        [(r["input_ids"], r["labels"]) for r in want]
    assert prepared.eval[:] == plain.eval[:], "held-out rows are not prepared (load_data trims them first)"
    if not data:
        assert len(plain.train) > 36, "the small file should have been repeated"
