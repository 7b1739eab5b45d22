"""Evaluation throughput (#21): examples per second of `studio eval` against lm-eval's own
CLI on the same task (the shipped studio_arith_mc: 224 four-way multiple-choice
questions) and the same model folder (a tiny Llama with the studio's tokenizer).

Three sides, each a whole process from start to summary, interleaved so load bursts on
a shared machine land on all of them:
  lm-eval CLI        python -m lm_eval --model hf --model_args pretrained=DIR --tasks ...
  studio (lm-eval)   python -m studio eval run SPEC --foreground  (kind lm_eval: lm-eval's
                     code on the model the studio loaded)
  studio (choice)    the same questions as the studio's own multiple-choice task

    .venv/bin/python bench/eval_throughput.py [--repeats 3]

Prints a table and writes bench/results/eval_throughput.json."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (PYTHON, REPO, bench_env, interleaved, median, ratio, table, timed_run,  # noqa: E402
                          versions, write_json)

TASK = "studio_arith_mc"
N_EXAMPLES = 224
TINY = dict(source="scratch", tokenizer="assets/tokenizer", positional_encoding="rope", attention="gqa",
            norm="rmsnorm", activation="swiglu", d_model=128, n_heads=4, n_kv_heads=2, d_ff=352, n_layers=4,
            max_seq_len=128)


def make_model(folder: Path) -> Path:
    from transformers import set_seed

    from studio.model import build_or_load, load_tokenizer
    from studio.spec import ModelSpec

    spec = ModelSpec(**TINY)
    tok = load_tokenizer(spec)
    set_seed(0)
    build_or_load(spec, tok, None).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def write_specs(work: Path, model: Path) -> dict[str, Path]:
    specs = {}
    for name, task in (("lm", f"{{name: mc, kind: lm_eval, lm_tasks: [{TASK}]}}"),
                       ("choice", "{name: mc, kind: choice, data: assets/eval/arith_mc.jsonl, chat: false}")):
        path = work / f"{name}.yaml"
        path.write_text(f"name: bench\nmodels: [{model}]\ntasks:\n  - {task}\n"
                        "settings: {batch_size: 16, bootstrap: 0}\n")
        specs[name] = path
    return specs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    env = bench_env(threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = make_model(work / "model")
        specs = write_specs(work, model)
        runs = work / "runs"
        cmds = {
            "lm-eval CLI": [PYTHON, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
                            "--tasks", TASK, "--include_path", "assets/eval", "--device", "cpu", "--batch_size", "16"],
            "studio (lm-eval)": [PYTHON, "-m", "studio", "--runs-dir", str(runs), "eval", "run", str(specs["lm"]),
                                 "--foreground", "--device", "cpu"],
            "studio (choice)": [PYTHON, "-m", "studio", "--runs-dir", str(runs), "eval", "run", str(specs["choice"]),
                                "--foreground", "--device", "cpu"],
        }
        sides = {name: (lambda i, c=cmd: timed_run(c, env=env, cwd=REPO, with_cpu=True)) for name, cmd in cmds.items()}
        results = interleaved(sides, args.repeats, lambda n, i, r: print(f"{n} #{i}: {r[0]:.1f}s", flush=True))
    base = median([w for w, _ in results["lm-eval CLI"]])
    rows, out = [], {}
    for name, res in results.items():
        wall, cpu = median([w for w, _ in res]), median([c for _, c in res])
        rows.append([name, wall, N_EXAMPLES / wall, cpu, ratio(wall, base)])
        out[name] = {"wall_s": wall, "examples_per_s": N_EXAMPLES / wall, "cpu_s": cpu, "vs_lm_eval": ratio(wall, base),
                     "runs": res}
    print(table(["side", "wall s", "examples/s", "cpu s", "time vs lm-eval"], rows))
    path = write_json("eval_throughput", {"task": TASK, "examples": N_EXAMPLES, "repeats": args.repeats,
                                          "results": out, "versions": versions("lm_eval", "torch", "transformers")})
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
