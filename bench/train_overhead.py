"""What the studio costs over a bare TRL script doing the same training job.

    .venv/bin/python bench/train_overhead.py [--steps 30] [--repeats 3] [--regime full|lora]
                                             [--threads 1] [--spec quickstart]

Side A is the studio's worker (`python -m studio.worker RUN_DIR`, spec.yaml written by
this script from the recipe); side B is a plain script (this file with --bare: torch,
transformers, trl and datasets only) building the same Llama config, the same tokenizer
(assets/tokenizer), the same data (assets/data/arith_sft_train.jsonl), the same
SFTConfig numbers (steps, batch, max length, seed, lr, schedule) and saving the model at
the end, as the studio does. Runs are interleaved (A, B, A, B, ...) and medians are
reported: whole-process wall time, train time, training tokens/s (non-padding tokens
seen / train runtime), and the max abs difference of the per-step losses (the studio's
curve must equal the bare script's: same seed, same weights, same batches).

Writes bench/results/train_overhead.json (or train_overhead_<regime>.json).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (PYTHON, REPO, bench_env, interleaved, median, ratio, table,  # noqa: E402
                          timed_run, versions, write_json)


# -- side B: the bare script (imports only the libraries) ------------------------------


def bare_main(job_path: str) -> None:
    """Train exactly as `job` says with plain trl, save, and write result.json."""
    job = json.loads(Path(job_path).read_text())
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, set_seed
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = load_dataset("json", data_files=job["data"], split="train")
    set_seed(job["seed"])
    config = LlamaConfig(**job["model_config"], pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    if job["lora"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **job["lora"]))
    args = SFTConfig(output_dir=job["out"], report_to=[], disable_tqdm=True, save_strategy="no",
                     use_cpu=True, bf16=False, activation_checkpointing=False, logging_first_step=True,
                     include_num_input_tokens_seen="non_padding",
                     # the template marks assistant turns with {% generation %} (or {%- generation %})
                     assistant_only_loss=re.search(r"{%-?\s*generation\s*-?%}", tokenizer.chat_template or "") is not None,
                     **job["args"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    out = trainer.train()
    trainer.save_model(job["out"] + "/final")
    tokenizer.save_pretrained(job["out"] + "/final")
    losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    Path(job["out"], "result.json").write_text(json.dumps({
        "losses": losses, "train_runtime": out.metrics["train_runtime"],
        "tokens": trainer.state.num_input_tokens_seen,
        "samples": trainer.state.global_step * job["args"]["per_device_train_batch_size"]}))


# -- the parent: set both sides up, time them, compare ---------------------------------


def studio_spec(recipe: str, steps: int, regime: str):
    from studio.presets import load_run

    return load_run(recipe).with_overrides([
        f"train.max_steps={steps}", "data.eval_fraction=0", "train.eval_every=0", "train.log_every=1",
        "train.save_every=0", f"method.regime={regime}", "train.precision=fp32",
        "train.gradient_checkpointing=off"])


def bare_job(spec, out: Path) -> dict:
    """The same job, spelled out in library terms (read off the studio's spec)."""
    from studio.estimate import spec_config

    cfg = spec_config(spec.model)
    assert cfg.pop("model_type") == "llama", "the bare side builds a LlamaConfig"
    t, m = spec.train, spec.method
    sched = {"none": "constant_with_warmup"}.get(t.scheduler, t.scheduler)
    return {
        "tokenizer": str(REPO / spec.model.tokenizer), "data": str(REPO / spec.data.sources[0].path),
        "seed": t.seed, "model_config": cfg, "out": str(out),
        "lora": ({"r": m.lora_r, "lora_alpha": m.lora_alpha, "lora_dropout": m.lora_dropout,
                  "target_modules": "all-linear"} if m.regime == "lora" else None),
        "args": {"max_steps": t.max_steps, "per_device_train_batch_size": t.batch_size,
                 "gradient_accumulation_steps": t.grad_accum, "learning_rate": t.learning_rate,
                 "weight_decay": t.weight_decay, "lr_scheduler_type": sched, "warmup_steps": t.warmup_steps,
                 "max_grad_norm": t.max_grad_norm, "seed": t.seed, "data_seed": t.seed,
                 "logging_steps": t.log_every, "max_length": spec.model.max_seq_len,
                 "packing": spec.data.packing, "dataloader_num_workers": 0},
    }


def run_studio(spec, tmp: Path, i: int, env: dict) -> dict:
    runs = tmp / f"studio-runs-{i}"
    run_dir = runs / "run"
    run_dir.mkdir(parents=True)
    spec.save(run_dir / "spec.yaml")
    wall, cpu = timed_run([PYTHON, "-m", "studio.worker", str(run_dir)], env=env, log=run_dir / "train.log",
                          with_cpu=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = {r["step"]: r["loss"] for r in records if r.get("kind") == "train" and r.get("loss") is not None}
    summary = next(r for r in records if r.get("kind") == "summary")
    res = {"wall": wall, "cpu": cpu, "train": summary["runtime"], "tokens": summary["num_tokens"],
           "samples": summary["step"] * spec.train.batch_size, "losses": losses}
    shutil.rmtree(runs, ignore_errors=True)
    return res


def run_bare(spec, tmp: Path, i: int, env: dict) -> dict:
    out = tmp / f"bare-{i}"
    out.mkdir(parents=True)
    job = out / "job.json"
    job.write_text(json.dumps(bare_job(spec, out)))
    wall, cpu = timed_run([PYTHON, str(Path(__file__).resolve()), "--bare", str(job)], env=env,
                          log=out / "train.log", with_cpu=True)
    r = json.loads((out / "result.json").read_text())
    res = {"wall": wall, "cpu": cpu, "train": r["train_runtime"], "tokens": r["tokens"], "samples": r["samples"],
           "losses": {int(k): v for k, v in r["losses"].items()}}
    shutil.rmtree(out, ignore_errors=True)
    return res


def summarise(results: dict, spec) -> dict:
    def med(side, key):
        return median([r[key] for r in results[side]])

    def tps(r):
        return r["tokens"] / r["train"] if r["train"] else None

    rows, out = [], {}
    for side in ("studio", "bare"):
        rs = results[side]
        out[side] = {"wall_s": med(side, "wall"), "cpu_s": med(side, "cpu"), "train_s": med(side, "train"),
                     "startup_s": median([r["wall"] - r["train"] for r in rs]),
                     "tokens_per_s": median([tps(r) for r in rs]), "runs": len(rs),
                     "wall_all": [round(r["wall"], 2) for r in rs]}
    diffs = []
    for a, b in zip(results["studio"], results["bare"]):
        common = sorted(set(a["losses"]) & set(b["losses"]))
        diffs.append(max(abs(a["losses"][s] - b["losses"][s]) for s in common) if common else None)
    same_steps = all(set(a["losses"]) == set(b["losses"]) for a, b in zip(results["studio"], results["bare"]))
    out["loss_max_abs_diff"] = max(d for d in diffs if d is not None) if any(d is not None for d in diffs) else None
    out["loss_steps_compared"] = len(results["studio"][0]["losses"]) if same_steps else None
    out["wall_ratio"] = ratio(out["studio"]["wall_s"], out["bare"]["wall_s"])
    out["cpu_ratio"] = ratio(out["studio"]["cpu_s"], out["bare"]["cpu_s"])
    out["tokens_per_s_ratio"] = ratio(out["bare"]["tokens_per_s"], out["studio"]["tokens_per_s"])  # >1: studio slower
    out["first_losses"] = {"studio": [round(results["studio"][0]["losses"][s], 4) for s in sorted(results["studio"][0]["losses"])[:5]],
                           "bare": [round(results["bare"][0]["losses"][s], 4) for s in sorted(results["bare"][0]["losses"])[:5]]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bare", help=argparse.SUPPRESS)
    p.add_argument("--spec", default="quickstart", help="recipe name or spec YAML (a scratch Llama)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--regime", default="full", choices=["full", "lora"])
    p.add_argument("--threads", type=int, default=1, help="torch threads for both sides (0: library default)")
    args = p.parse_args()
    if args.bare:
        return bare_main(args.bare)

    spec = studio_spec(args.spec, args.steps, args.regime)
    env = bench_env(args.threads or None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        def show(name, i, r):
            print(f"  round {i + 1} {name:<6} wall {r['wall']:6.1f} s  cpu {r['cpu']:6.1f} s  train {r['train']:6.1f} s  "
                  f"{r['tokens'] / r['train']:8.0f} tok/s", flush=True)

        print(f"{args.repeats} interleaved rounds, {args.steps} steps, regime {args.regime}, "
              f"threads {args.threads or 'default'}", flush=True)
        results = interleaved({"studio": lambda i: run_studio(spec, tmp, i, env),
                               "bare": lambda i: run_bare(spec, tmp, i, env)}, args.repeats, show)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = summarise(results, spec)
    rows = [[name, s[side]["wall_s"], s[side]["cpu_s"], s[side]["startup_s"], s[side]["train_s"],
             s[side]["tokens_per_s"]]
            for name, side in (("studio worker", "studio"), ("bare trl script", "bare"))]
    rows.append(["studio / bare", s["wall_ratio"], s["cpu_ratio"], ratio(s["studio"]["startup_s"], s["bare"]["startup_s"]),
                 ratio(s["studio"]["train_s"], s["bare"]["train_s"]), ratio(s["studio"]["tokens_per_s"], s["bare"]["tokens_per_s"])])
    print()
    print(table(["median of %d" % args.repeats, "wall s", "CPU s", "start-up+save s", "train s", "train tok/s"], rows))
    print(f"\nper-step loss, max |studio - bare| over {s['loss_steps_compared']} steps: {s['loss_max_abs_diff']}")
    print(f"wall-time ratio studio/bare: {s['wall_ratio']:.3f} (target <= 1.05); "
          f"CPU-time ratio {s['cpu_ratio']:.3f} (what load noise hides least)")
    name = "train_overhead" if args.regime == "full" else f"train_overhead_{args.regime}"
    path = write_json(name, {"settings": {"spec": args.spec, "steps": args.steps, "repeats": args.repeats,
                                          "regime": args.regime, "threads": args.threads,
                                          "batch_size": spec.train.batch_size, "max_len": spec.model.max_seq_len},
                             "versions": versions("torch", "transformers", "trl", "peft", "datasets"), **s})
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
