"""Serving speed: `studio serve` (the OpenAI-compatible API in its own process, streamed
over HTTP) vs a bare transformers generate on the same model, and the same model as GGUF
in llama.cpp's runtime vs transformers, all on CPU, rounds interleaved.

    .venv/bin/python bench/serve_latency.py [--rounds 30] [--max-new-tokens 96] [--threads 1]
                                            [--concurrent 8] [--size tiny|small] [--model FOLDER] [--no-gguf]

Reports median time to the first streamed text and tokens/s for one stream, read by the
official openai client and by plain httpx (the server's own cost, without the client
library's); the total tokens/s of --concurrent streams at once (replies are generated
one at a time per model, so this shows what queueing costs, not batching); and GGUF
(f16, q8_0) tokens/s vs the transformers model (greedy, same prompt ids, same number of
new tokens). --size small widens the quickstart model to ~30M parameters: at ~1M a token
takes ~1.5 ms and any HTTP hop shows as a large share. Writes
bench/results/serve_latency[_small].json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chat_latency import MESSAGES, bare_load, bare_stream  # noqa: E402
from bench.common import REPO, median, ratio, save_tiny_model, table, use_threads, write_json  # noqa: E402


# model shapes for --size (fields of the quickstart recipe's model they override)
SIZES = {"tiny": {}, "small": {"d_model": 512, "n_heads": 8, "n_kv_heads": 4, "d_ff": 1408, "n_layers": 8}}


def text_only(folder: str) -> None:
    """Zero the output rows of tokens that are not whole text on their own (byte pieces
    of a UTF-8 character): random weights of the small shape otherwise reply with nothing
    but byte pieces, which no streamer can show before the reply ends, and the bench
    would time that instead of the server. A trained model replies in text."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    partial = [i for i in range(len(tok)) if "\ufffd" in tok.decode([i])]
    path = Path(folder) / "model.safetensors"
    weights = load_file(str(path))
    key = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"
    with torch.no_grad():
        weights[key][partial] = 0
    save_file(weights, str(path), metadata={"format": "pt"})


def start_server(folder: str, threads: int):
    """`python -m studio serve` in its own process, as it runs for real: the client's
    parsing then does not share the server's interpreter lock."""
    import httpx

    from studio.ship.cli import free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", folder, "--port", str(port)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(url + "/models").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("studio serve did not come up in 120 s")


def served_stream(client, max_new_tokens: int) -> dict:
    start = time.perf_counter()
    first, text, usage = None, "", None
    for chunk in client.chat.completions.create(model="model", messages=MESSAGES, temperature=0, max_tokens=max_new_tokens,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter() - start
            text += chunk.choices[0].delta.content
    total = time.perf_counter() - start
    return {"first": first, "total": total, "text": text, "tokens": usage.completion_tokens}


def raw_stream(http, url: str, max_new_tokens: int) -> dict:
    """The same request read with plain httpx and json.loads per event: the server's own
    latency, without the openai client's request building and per-chunk objects."""
    body = {"model": "model", "messages": MESSAGES, "temperature": 0, "max_tokens": max_new_tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, text, tokens = None, "", 0
    with http.stream("POST", url + "/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            piece = event["choices"][0]["delta"].get("content") if event["choices"] else None
            if piece:
                first = first or time.perf_counter() - start
                text += piece
    return {"first": first, "total": time.perf_counter() - start, "text": text, "tokens": tokens}


def concurrent(client, n: int, max_new_tokens: int) -> float:
    """Total generated tokens/s of n streams started together."""
    results, start = [], time.perf_counter()
    threads = [threading.Thread(target=lambda: results.append(served_stream(client, max_new_tokens))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r["tokens"] for r in results) / (time.perf_counter() - start)


def serve_rounds(folder: str, args) -> tuple[dict, list]:
    import httpx
    import openai

    model, tok = bare_load(folder)
    srv, url = start_server(folder, args.threads)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    http = httpx.Client(timeout=120)
    sides = {"served": lambda n: served_stream(client, n), "raw": lambda n: raw_stream(http, url, n),
             "bare": lambda n: bare_stream(model, tok, n)}
    try:
        for side in sides.values():  # warm-up: first-call costs on every side
            side(8)
        rounds = {side: [] for side in sides}
        for i in range(args.rounds):
            order = list(sides)[i % 3:] + list(sides)[:i % 3]  # each side first in turn
            for side in order:
                rounds[side].append(sides[side](args.max_new_tokens))
            print("  round " + str(i + 1) + ": first text " + " | ".join(
                f"{side} {rounds[side][-1]['first'] * 1000:6.1f} ms" for side in sides), flush=True)
        together = concurrent(client, args.concurrent, args.max_new_tokens)
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(30)
    stats = {side: {"first_token_ms": median([r["first"] * 1000 for r in rs]),
                    "tokens_per_s": median([r["tokens"] / r["total"] for r in rs]), "tokens": rs[0]["tokens"]}
             for side, rs in rounds.items()}
    stats["served"]["concurrent_tokens_per_s"] = together
    stats["same_text"] = all(a["text"] == b["text"] == c["text"]
                             for a, b, c in zip(rounds["served"], rounds["raw"], rounds["bare"]))
    first, speed = ({side: stats[side][key] for side in sides} for key in ("first_token_ms", "tokens_per_s"))
    rows = [["studio serve, openai client", first["served"], speed["served"]],
            ["studio serve, plain httpx", first["raw"], speed["raw"]],
            ["bare transformers generate", first["bare"], speed["bare"]],
            ["serve (openai client) / bare", ratio(first["served"], first["bare"]), ratio(speed["served"], speed["bare"])],
            ["serve (plain httpx) / bare", ratio(first["raw"], first["bare"]), ratio(speed["raw"], speed["bare"])]]
    return stats, rows


def gguf_rounds(folder: str, tmp: Path, args) -> tuple[dict, list]:
    """tokens/s of greedy generation from the same prompt ids: transformers vs llama.cpp."""
    import torch

    from studio.inference import GenerationSettings, build_prompt, load
    from studio.ship import gguf
    from studio.ship.engine import GGUFBackend

    loaded = load(folder, device="cpu")
    ids = loaded.tokenizer(build_prompt(loaded.tokenizer, MESSAGES, GenerationSettings()),
                           add_special_tokens=False)["input_ids"]
    n = args.max_new_tokens

    def hf() -> float:
        start = time.perf_counter()
        with torch.inference_mode():  # no stop ids: both sides make exactly n tokens
            out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                        pad_token_id=loaded.tokenizer.pad_token_id)
        return (out.shape[1] - len(ids)) / (time.perf_counter() - start)

    def llama(backend) -> float:
        start, made = time.perf_counter(), 0
        for _ in backend.llama.generate(ids, temp=0.0, reset=True):
            made += 1
            if made == n:
                break
        return made / (time.perf_counter() - start)

    backends = {}
    for kind in ("f16", "q8_0"):
        path = gguf.write(folder, tmp / f"m-{kind}.gguf", kind)
        backends[kind] = GGUFBackend(path, n_threads=args.threads or None)
    speeds = {"transformers": [], **{k: [] for k in backends}}
    hf(), [llama(b) for b in backends.values()]  # warm-up
    for _ in range(args.rounds):
        speeds["transformers"].append(hf())
        for kind, b in backends.items():
            speeds[kind].append(llama(b))
    stats = {k: median(v) for k, v in speeds.items()}
    rows = [[f"GGUF {k} (llama.cpp)" if k != "transformers" else "transformers (safetensors)", v,
             ratio(v, stats["transformers"])] for k, v in stats.items()]
    return stats, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=1, help="torch and llama.cpp threads (0: library default)")
    p.add_argument("--concurrent", type=int, default=8)
    p.add_argument("--model", help="a model folder (default: the quickstart model, saved to a temp folder)")
    p.add_argument("--size", choices=list(SIZES), default="tiny",
                   help="tiny: the quickstart model (~1M parameters, Python overhead dominates); small: the "
                        "same family widened to ~30M, where compute does, as in a real model")
    p.add_argument("--no-gguf", action="store_true", help="skip the llama.cpp part")
    args = p.parse_args()
    use_threads(args.threads)
    result = {"settings": {k: v for k, v in vars(args).items() if k != "model"}}
    name = "serve_latency" if args.size == "tiny" else f"serve_latency_{args.size}"
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = args.model
        if not folder:
            folder = str(save_tiny_model(Path(tmp) / "model", **SIZES[args.size]))
            text_only(folder)
        result["serve"], rows = serve_rounds(folder, args)
        print()
        print(table([f"median of {args.rounds}", "first text ms", "tokens/s"], rows))
        print(f"same reply text: {result['serve']['same_text']}; {args.concurrent} concurrent streams: "
              f"{result['serve']['served']['concurrent_tokens_per_s']:.0f} tokens/s in total (target: within 1.1x)")
        from studio.ship import gguf

        if not args.no_gguf and gguf.tools_dir() and gguf.runtime_version():
            result["gguf"], rows = gguf_rounds(folder, Path(tmp), args)
            print()
            print(table([f"greedy tokens/s, median of {args.rounds}", "tokens/s", "vs transformers"], rows))
        else:
            print("GGUF part skipped: " + gguf.status())
    path = write_json(name, result)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
