"""How fast the data layer reads, normalises, mixes and measures rows.

    .venv/bin/python bench/data_pipeline.py [--rows 200000]

Prints rows/s for build() on a synthetic chat file, and the preview's token-length map
next to a plain datasets map doing the same tokenising (the preview must not be slower).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--token-rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["STUDIO_DATA_ROOTS"] = tmp
        from studio.data import build
        from studio.data.preview import quiet_progress, token_lengths
        from studio.spec import DataSource, RunSpec

        path = Path(tmp) / "chat.jsonl"
        rng = random.Random(0)
        with open(path, "w") as fh:
            for _ in range(args.rows):
                a, b = rng.randint(0, 99), rng.randint(0, 99)
                fh.write(json.dumps({"messages": [
                    {"role": "user", "content": f"What is {a} + {b}? Please answer."},
                    {"role": "assistant", "content": f"The answer is {a + b}."}]}) + "\n")
        spec = RunSpec()
        spec.data.sources = [DataSource(path=str(path))]
        with quiet_progress():
            start = time.perf_counter()
            bundle = build(spec, ("conversation",))
            took = time.perf_counter() - start
            print(f"build: {args.rows} rows in {took:.2f} s ({args.rows / took:,.0f} rows/s)")

            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(Path(__file__).resolve().parents[1] / "assets/tokenizer"))
            ds = bundle.train.select(range(min(args.token_rows, len(bundle.train)))).flatten_indices()

            def plain(batch):
                texts = tok.apply_chat_template(batch["messages"], tokenize=False)
                return {"n": [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]}

            def ours_once(rows):
                start = time.perf_counter()
                token_lengths(rows, "conversation", tok)
                return time.perf_counter() - start

            def plain_once(rows):
                start = time.perf_counter()
                rows.map(plain, batched=True, remove_columns=rows.column_names, load_from_cache_file=False)
                return time.perf_counter() - start

            # warm both (template compilation, tokenizer caches), then alternate: the first
            # call of either would otherwise carry one-time costs the other skips
            ours_once(ds.select(range(200))), plain_once(ds.select(range(200)))
            times = {"ours": [], "plain": []}
            for i in range(args.rounds):
                for side in (("ours", "plain") if i % 2 == 0 else ("plain", "ours")):
                    times[side].append((ours_once if side == "ours" else plain_once)(ds))
            ours, base = statistics.median(times["ours"]), statistics.median(times["plain"])
            print(f"token lengths of {len(ds)} rows (median of {args.rounds}): preview {ours:.2f} s, "
                  f"plain datasets map {base:.2f} s, ratio {ours / base:.2f}")


if __name__ == "__main__":
    main()
