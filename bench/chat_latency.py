"""Chat speed: the studio's studio.inference (load + stream_chat) vs a bare transformers
generate with a TextIteratorStreamer and the same settings (greedy, same prompt, same
max_new_tokens, same stop tokens), in one process, rounds interleaved.

    .venv/bin/python bench/chat_latency.py [--rounds 100] [--max-new-tokens 96] [--threads 1]
                                           [--model FOLDER]

Without --model it saves the quickstart recipe's scratch model (seeded) to a temporary
folder. Reports median load time, time to the first streamed text, and generated tokens/s
(tokens from the bare side's output ids; the studio's text must be the same text).
Writes bench/results/chat_latency.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, median, ratio, save_tiny_model, table, use_threads, write_json  # noqa: E402

MESSAGES = [{"role": "user", "content": "What is 17 + 25? Explain each step of the sum."}]


def bare_load(folder: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    model.eval()
    return model, tok


def bare_stream(model, tok, max_new_tokens: int) -> dict:
    import torch
    from transformers import TextIteratorStreamer

    start, cpu0 = time.perf_counter(), time.process_time()
    prompt = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    stops = sorted({i for i in [tok.eos_token_id, *tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])]
                    if isinstance(i, int) and i >= 0 and i != tok.unk_token_id})
    out = []

    def run():
        with torch.inference_mode():
            out.append(model.generate(**inputs, streamer=streamer, max_new_tokens=max_new_tokens, do_sample=False,
                                      eos_token_id=stops, pad_token_id=tok.pad_token_id))

    thread = threading.Thread(target=run)
    thread.start()
    first, text = None, ""
    for piece in streamer:
        if first is None:
            first, first_cpu = time.perf_counter() - start, time.process_time() - cpu0
        text += piece
    thread.join()
    total = time.perf_counter() - start
    return {"first": first, "first_cpu": first_cpu, "total": total, "cpu": time.process_time() - cpu0, "text": text,
            "tokens": out[0].shape[1] - inputs["input_ids"].shape[1]}


def studio_stream(loaded, max_new_tokens: int) -> dict:
    from studio.inference import GenerationSettings, stream_chat

    settings = GenerationSettings(temperature=0.0, max_new_tokens=max_new_tokens)
    start, cpu0 = time.perf_counter(), time.process_time()
    first, text = None, ""
    for text in stream_chat(loaded, MESSAGES, settings):
        if first is None:
            first, first_cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"first": first, "first_cpu": first_cpu, "total": time.perf_counter() - start,
            "cpu": time.process_time() - cpu0, "text": text}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=100,
                   help="many, because the first-text figure is bimodal (GIL hand-off) and the machine drifts")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: library default)")
    p.add_argument("--model", help="a model folder (default: the quickstart model, saved to a temp folder)")
    args = p.parse_args()
    use_threads(args.threads)
    from studio.inference import load

    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        folder = args.model or str(save_tiny_model(Path(tmp) / "model"))
        loads = {"studio": [], "bare": []}
        for _ in range(2):
            t = time.perf_counter()
            loaded = load(folder, device="cpu")
            loads["studio"].append(time.perf_counter() - t)
            t = time.perf_counter()
            model, tok = bare_load(folder)
            loads["bare"].append(time.perf_counter() - t)
        studio_stream(loaded, 8), bare_stream(model, tok, 8)  # warm-up (first-call costs on both sides)
        rounds = {"studio": [], "bare": []}
        for i in range(args.rounds):
            if i % 2:  # alternate who goes first, so neither always follows the other's garbage
                s = studio_stream(loaded, args.max_new_tokens)
                b = bare_stream(model, tok, args.max_new_tokens)
            else:
                b = bare_stream(model, tok, args.max_new_tokens)
                s = studio_stream(loaded, args.max_new_tokens)
            s["tokens"] = b["tokens"]
            rounds["bare"].append(b)
            rounds["studio"].append(s)
            print(f"  round {i + 1}: studio first {s['first'] * 1000:6.1f} ms total {s['total']:.3f} s | "
                  f"bare first {b['first'] * 1000:6.1f} ms total {b['total']:.3f} s | {b['tokens']} tokens", flush=True)
    same_text = all(s["text"] == b["text"] for s, b in zip(rounds["studio"], rounds["bare"]))

    def stats(side):
        rs = rounds[side]
        return {"load_s": median(loads[side][1:] or loads[side]), "first_token_ms": median([r["first"] * 1000 for r in rs]),
                "tokens_per_s": median([r["tokens"] / r["total"] for r in rs]), "tokens": rs[0]["tokens"],
                "first_token_cpu_ms": median([r["first_cpu"] * 1000 for r in rs]),
                "tokens_per_cpu_s": median([r["tokens"] / r["cpu"] for r in rs if r["cpu"] > 0])}

    s, b = stats("studio"), stats("bare")
    keys = ("load_s", "first_token_ms", "tokens_per_s", "first_token_cpu_ms", "tokens_per_cpu_s")
    rows = [["studio.inference", *(s[k] for k in keys)], ["bare transformers", *(b[k] for k in keys)],
            ["studio / bare", *(ratio(s[k], b[k]) for k in keys)]]
    print()
    print(table([f"median of {args.rounds}", "load s", "first text ms", "tokens/s", "first text CPU ms",
                 "tokens/CPU-s"], rows))
    print("CPU columns: process CPU time, which a loaded machine disturbs far less than wall time")
    print(f"same reply text on both sides: {same_text}; {b['tokens']} new tokens per reply "
          f"(target: first-token and tokens/s within 1.1x)")
    path = write_json("chat_latency", {"settings": {k: v for k, v in vars(args).items() if k != "model"},
                                       "studio": s, "bare": b, "same_text": same_text,
                                       "first_token_ratio": ratio(s["first_token_ms"], b["first_token_ms"]),
                                       "tokens_per_s_ratio": ratio(b["tokens_per_s"], s["tokens_per_s"]),
                                       "first_token_cpu_ratio": ratio(s["first_token_cpu_ms"], b["first_token_cpu_ms"]),
                                       "tokens_per_cpu_s_ratio": ratio(b["tokens_per_cpu_s"], s["tokens_per_cpu_s"])})
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
