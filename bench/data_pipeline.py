"""Data speed: normalising + mixing + tokenising chat rows, the studio's pipeline vs a plain
`datasets` pipeline doing the same job, and the Data tab's token-length preview vs a plain map.

    .venv/bin/python bench/data_pipeline.py [--rows 100000] [--rounds 3] [--procs N] [--no-trl]

Two local JSONL sources in different formats: 60% Alpaca instruction rows, 40% ShareGPT
conversations, blended 1:1 by weight (interleaved until every source is used up, seed 0).
- studio: what the SFT worker hands trl: `studio.data.build` (read, detect, normalise,
  mix) tokenising with `studio.methods.sft_tokens.tokenise_chats` before it blends (a row
  the blend repeats is tokenised once), then `drop_untrained`.
- plain: `datasets.load_dataset("json")` per source, a batched normalising map, the same
  `interleave_datasets` call, a batched tokenising map (input_ids and assistant-only
  labels, cut to 512 tokens); both maps in --procs processes (default: as many as the
  studio uses, up to 4).
- trl's own preparation (once, unless --no-trl): the plain blend handed to trl's
  SFTTrainer, which tokenises row by row; what the studio did before it tokenised itself.
Both pipelines must give the same rows (checked). Medians of --rounds, sides alternating;
each round reads the files afresh (a new datasets cache folder).
Writes bench/results/data_pipeline.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, median, ratio, table, write_json  # noqa: E402

MAX_LEN = 512
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def write_sources(folder: Path, rows: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    alpaca, share = folder / "alpaca.jsonl", folder / "sharegpt.jsonl"
    with open(alpaca, "w") as fh:
        for _ in range(rows * 6 // 10):
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            fh.write(json.dumps({"instruction": f"What is {a} + {b}? Show the sum.", "input": "",
                                 "output": f"{a} + {b} = {a + b}. The answer is {a + b}."}) + "\n")
    with open(share, "w") as fh:
        for _ in range(rows - rows * 6 // 10):
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            fh.write(json.dumps({"conversations": [
                {"from": "human", "value": f"Add {a} and {b}, please."},
                {"from": "gpt", "value": f"{a} plus {b} is {a + b}."},
                {"from": "human", "value": "And the difference?"},
                {"from": "gpt", "value": f"{a} minus {b} is {a - b}."}]}) + "\n")
    return alpaca, share


def studio_pipeline(paths, tokenizer, _procs):
    """What studio.methods.sft does before trl: tokenise through build's prepare, drop untrained rows."""
    import functools

    from studio.data import build
    from studio.methods.common import has_generation_marks
    from studio.methods.sft_tokens import drop_untrained, tokenise_chats
    from studio.spec import DataSource, RunSpec

    spec = RunSpec()
    spec.data.sources = [DataSource(path=str(p), weight=1.0) for p in paths]
    spec.data.eval_fraction = 0.0  # the plain side holds nothing out either
    tokenise = functools.partial(tokenise_chats, tokenizer=tokenizer, max_length=MAX_LEN,
                                 assistant_only=has_generation_marks(tokenizer), keep_untrained=True)
    return drop_untrained(build(spec, ("conversation",), prepare=tokenise).train)


def plain_blend(paths, procs, cache_dir):
    import datasets

    def alpaca(batch):
        return {"messages": [[{"role": "user", "content": i + ("\n\n" + x if x and x.strip() else "")},
                              {"role": "assistant", "content": o}]
                             for i, x, o in zip(batch["instruction"], batch["input"], batch["output"])]}

    def sharegpt(batch):
        return {"messages": [[{"role": ROLES[t["from"]], "content": t["value"]} for t in conv]
                             for conv in batch["conversations"]]}

    parts = []
    for path, fn in zip(paths, (alpaca, sharegpt)):
        ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)
        parts.append(ds.map(fn, batched=True, num_proc=procs, remove_columns=ds.column_names))
    return datasets.interleave_datasets(parts, probabilities=[0.5, 0.5], seed=0, stopping_strategy="all_exhausted")


def plain_pipeline(paths, tokenizer, procs, cache_dir):
    blend = plain_blend(paths, procs, cache_dir)

    def tokenise(batch):
        out = tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids = [x[:MAX_LEN] for x in out["input_ids"]]
        labels = [[t if m else -100 for t, m in zip(x, mask)] for x, mask in zip(ids, out["assistant_masks"])]
        return {"input_ids": ids, "labels": labels}

    return blend.map(tokenise, batched=True, num_proc=procs, remove_columns=blend.column_names)


def trl_preparation(paths, tokenizer, procs, cache_dir):
    """The plain blend through trl's SFTTrainer's own preparation (one process, as trl defaults)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    blend = plain_blend(paths, procs, cache_dir)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    args = SFTConfig(output_dir=str(Path(cache_dir) / "trl"), max_length=MAX_LEN, assistant_only_loss=True,
                     report_to=[], use_cpu=True)
    start = time.perf_counter()
    with torch.device("cpu"):
        SFTTrainer(model=model, args=args, train_dataset=blend, processing_class=tokenizer)
    return time.perf_counter() - start


def preview_lengths(tokenizer, rows: int, rounds: int) -> dict:
    """The Data tab's token-length statistics vs a plain datasets map doing the same tokenising."""
    import datasets

    from studio.data.preview import token_lengths

    rng = random.Random(1)
    ds = datasets.Dataset.from_list([{"messages": [
        {"role": "user", "content": f"What is {a} + {b}? Please answer."},
        {"role": "assistant", "content": f"The answer is {a + b}."}]}
        for a, b in ((rng.randint(0, 99), rng.randint(0, 99)) for _ in range(rows))])

    def plain(batch):
        texts = tokenizer.apply_chat_template(batch["messages"], tokenize=False)
        return {"n": [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]}

    def ours(rows):
        return token_lengths(rows, "conversation", tokenizer)

    def base(rows):
        return rows.map(plain, batched=True, remove_columns=rows.column_names, load_from_cache_file=False)["n"]

    # warm both (template compilation, tokenizer caches), then alternate
    assert ours(ds.select(range(200))) == base(ds.select(range(200)))
    times = {"ours": [], "plain": []}
    for i in range(rounds):
        for side in (("ours", "plain") if i % 2 == 0 else ("plain", "ours")):
            start = time.perf_counter()
            (ours if side == "ours" else base)(ds)
            times[side].append(time.perf_counter() - start)
    return {"rows": rows, "preview_s": median(times["ours"]), "plain_s": median(times["plain"]),
            "ratio": ratio(median(times["ours"]), median(times["plain"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--procs", type=int, default=0, help="processes for the plain side's maps (0: the studio's rule)")
    p.add_argument("--preview-rows", type=int, default=20_000)
    p.add_argument("--no-trl", action="store_true", help="skip timing trl's own row-by-row preparation")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        os.environ["STUDIO_DATA_ROOTS"] = tmp
        import datasets
        from transformers import AutoTokenizer

        from studio.data.mix import map_procs
        from studio.data.preview import quiet_progress

        datasets.disable_progress_bars()
        tokenizer = AutoTokenizer.from_pretrained(str(REPO / "assets/tokenizer"))
        paths = write_sources(Path(tmp), args.rows)
        procs = args.procs or map_procs(datasets.Dataset.from_dict({"x": [0] * args.rows})) or 1
        times = {"studio": [], "plain": []}
        outputs = {}
        with quiet_progress():
            for i in range(args.rounds):
                for side in (("studio", "plain") if i % 2 == 0 else ("plain", "studio")):
                    cache = tempfile.mkdtemp(dir=tmp, prefix=f"cache-{side}-{i}-")
                    start = time.perf_counter()
                    if side == "studio":
                        out = studio_pipeline(paths, tokenizer, procs)
                    else:
                        out = plain_pipeline(paths, tokenizer, procs, cache)
                    times[side].append(time.perf_counter() - start)
                    outputs[side] = out
                    print(f"  round {i + 1} {side}: {times[side][-1]:.2f} s, {len(out)} rows", flush=True)
            same = (len(outputs["studio"]) == len(outputs["plain"])
                    and outputs["studio"]["input_ids"] == outputs["plain"]["input_ids"]
                    and outputs["studio"]["labels"] == outputs["plain"]["labels"])
            trl_s = None if args.no_trl else trl_preparation(paths, tokenizer, procs,
                                                             tempfile.mkdtemp(dir=tmp, prefix="cache-trl-"))
            preview = preview_lengths(tokenizer, args.preview_rows, args.rounds)

    s, b = median(times["studio"]), median(times["plain"])
    n = len(outputs["studio"])
    rows = [["studio: build(prepare=tokenise_chats)", s, round(n / s), ratio(s, b)],
            [f"plain datasets maps ({procs} process{'es' if procs > 1 else ''})", b, round(n / b), 1.0]]
    if trl_s is not None:
        rows.append(["trl SFTTrainer preparing the plain blend (1 process)", trl_s, round(n / trl_s),
                     ratio(trl_s, b)])
    print()
    print(table([f"{args.rows:,} source rows -> {n:,} blended (median of {args.rounds})", "s", "rows/s",
                 "/ plain"], rows))
    print(f"same rows on both sides: {same} (target: studio / plain <= 1.1)")
    print()
    print(table([f"preview token lengths, {preview['rows']:,} rows", "s", "/ plain"],
                [["studio.data.preview.token_lengths", preview["preview_s"], preview["ratio"]],
                 ["plain datasets map", preview["plain_s"], 1.0]]))
    path = write_json("data_pipeline", {
        "settings": {"rows": args.rows, "rounds": args.rounds, "procs": procs, "max_len": MAX_LEN},
        "blended_rows": n, "studio_s": s, "plain_s": b, "ratio": ratio(s, b), "same_rows": same,
        "trl_preparation_s": trl_s, "rounds": times, "preview": preview})
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
