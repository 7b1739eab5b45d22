"""Serving speed: `studio serve` (the OpenAI-compatible API in its own process, streamed
over HTTP to the official openai client) vs a bare transformers generate on the same model, and the same
model as GGUF in llama.cpp's runtime vs transformers, all on CPU, rounds interleaved.

    .venv/bin/python bench/serve_latency.py [--rounds 30] [--max-new-tokens 96] [--threads 1]
                                            [--concurrent 8] [--model FOLDER] [--no-gguf]

Reports median time to the first streamed text and tokens/s for one stream; the total
tokens/s of --concurrent streams at once (replies are generated one at a time per model,
so this shows what queueing costs, not batching); and GGUF (f16, q8_0) tokens/s vs the
transformers model (greedy, same prompt ids, same number of new tokens).
Writes bench/results/serve_latency.json.
"""
from __future__ import annotations

import argparse
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
    import openai

    model, tok = bare_load(folder)
    srv, url = start_server(folder, args.threads)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    try:
        served_stream(client, 8), bare_stream(model, tok, 8)  # warm-up: first-call costs on both sides
        rounds = {"served": [], "bare": []}
        for i in range(args.rounds):
            order = ("served", "bare") if i % 2 else ("bare", "served")
            for side in order:
                r = served_stream(client, args.max_new_tokens) if side == "served" else bare_stream(model, tok,
                                                                                                    args.max_new_tokens)
                rounds[side].append(r)
            print(f"  round {i + 1}: served first {rounds['served'][-1]['first'] * 1000:6.1f} ms | bare first "
                  f"{rounds['bare'][-1]['first'] * 1000:6.1f} ms", flush=True)
        together = concurrent(client, args.concurrent, args.max_new_tokens)
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(30)
    stats = {side: {"first_token_ms": median([r["first"] * 1000 for r in rs]),
                    "tokens_per_s": median([r["tokens"] / r["total"] for r in rs]), "tokens": rs[0]["tokens"]}
             for side, rs in rounds.items()}
    stats["served"]["concurrent_tokens_per_s"] = together
    stats["same_text"] = all(a["text"] == b["text"] for a, b in zip(rounds["served"], rounds["bare"]))
    rows = [["studio serve (HTTP, openai client)", stats["served"]["first_token_ms"], stats["served"]["tokens_per_s"]],
            ["bare transformers generate", stats["bare"]["first_token_ms"], stats["bare"]["tokens_per_s"]],
            ["serve / bare", ratio(stats["served"]["first_token_ms"], stats["bare"]["first_token_ms"]),
             ratio(stats["served"]["tokens_per_s"], stats["bare"]["tokens_per_s"])]]
    return stats, rows


def gguf_rounds(folder: str, tmp: Path, args) -> tuple[dict, list]:
    """tokens/s of greedy generation from the same prompt ids: transformers vs llama.cpp."""
    import torch

    from studio.inference import GenerationSettings, build_prompt, load
    from studio.ship import gguf
    from studio.ship.engine import GGUFBackend, Params

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
    p.add_argument("--no-gguf", action="store_true", help="skip the llama.cpp part")
    args = p.parse_args()
    use_threads(args.threads)
    result = {"settings": {k: v for k, v in vars(args).items() if k != "model"}}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = args.model or str(save_tiny_model(Path(tmp) / "model"))
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
    path = write_json("serve_latency", result)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
