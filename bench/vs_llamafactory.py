"""The studio against LlamaFactory on the same SFT-LoRA and full-SFT jobs.

    bash bench/setup_llamafactory.sh                  # once: LlamaFactory in .bench-venv/
    .venv/bin/python bench/vs_llamafactory.py [--steps 30] [--repeats 3] [--jobs lora,full]
                                              [--threads 1] [--lf-venv .bench-venv]

Both load the same model folder (the quickstart recipe's scratch Llama, seeded, saved
once with its ChatML tokenizer) and the same rows (assets/data/arith_sft_train.jsonl,
given to LlamaFactory as a sharegpt dataset through a dataset_info.json in a temporary
folder), with the same steps, batch size, max length, learning rate, schedule, warmup and
seed; no evaluation, no checkpoints, the final model saved. Each side keeps its own
defaults otherwise (that is what a person gets): LlamaFactory turns gradient
checkpointing on, the studio only when the memory estimate says it is needed.

Side A: `python -m studio train SPEC` (CLI -> worker subprocess -> run directory).
Side B: `llamafactory-cli train CONFIG.yaml` from its own venv.
Whole-process wall time, train time (the Trainer's train_runtime) and samples/s
(steps x batch / train time), interleaved runs, medians. Target: studio wall <= 0.75x.
Writes bench/results/vs_llamafactory.json. When LlamaFactory is not installed or fails,
the reason is printed and written to the JSON, and the studio side is still measured.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (PYTHON, REPO, RunFailed, bench_env, interleaved, median, ratio,  # noqa: E402
                          save_tiny_model, table, timed_run, write_json)

DATASET = "arith_sft"
TEMPLATE = "chatml"  # LlamaFactory's ChatML template (no default system prompt): the turn markers of assets/tokenizer


def common_settings(args) -> dict:
    from studio.presets import load_run

    t = load_run("quickstart").train
    return {"steps": args.steps, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
            "scheduler": t.scheduler, "warmup_steps": t.warmup_steps, "seed": t.seed, "max_len": 128,
            "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}


# -- the studio ---------------------------------------------------------------------


def studio_spec(model_dir: Path, regime: str, s: dict) -> dict:
    return {
        "name": f"bench-{regime}",
        "model": {"source": "pretrained", "name_or_path": str(model_dir), "max_seq_len": s["max_len"]},
        "data": {"sources": [{"kind": "file", "path": "assets/data/arith_sft_train.jsonl"}],
                 "eval_fraction": 0.0, "assistant_only_loss": True},
        "method": {"name": "sft", "regime": regime, "lora_r": s["lora_r"], "lora_alpha": s["lora_alpha"],
                   "lora_dropout": s["lora_dropout"], "target_modules": "all-linear"},
        "train": {"max_steps": s["steps"], "batch_size": s["batch_size"], "learning_rate": s["learning_rate"],
                  "scheduler": s["scheduler"], "warmup_steps": s["warmup_steps"], "seed": s["seed"],
                  "log_every": 5, "eval_every": 0, "save_every": 0},
    }


def run_studio(tmp: Path, model_dir: Path, regime: str, s: dict, i: int, env: dict) -> dict:
    work = tmp / f"studio-{regime}-{i}"
    work.mkdir()
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump(studio_spec(model_dir, regime, s), sort_keys=False))
    wall = timed_run([PYTHON, "-m", "studio", "--runs-dir", str(work / "runs"), "train", str(spec)],
                     env=env, log=work / "cli.log")
    run_dir = next(p for p in (work / "runs").iterdir() if p.is_dir())  # not the .device.lock file
    summary = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if '"summary"' in line][-1]
    res = {"wall": wall, "train": summary["runtime"], "samples": summary["step"] * s["batch_size"]}
    shutil.rmtree(work, ignore_errors=True)
    return res


# -- LlamaFactory ---------------------------------------------------------------------


def lf_dataset_dir(tmp: Path) -> Path:
    """The studio's rows as a LlamaFactory sharegpt dataset (role/content messages)."""
    folder = tmp / "lf-data"
    folder.mkdir(exist_ok=True)
    rows = [json.loads(line) for line in (REPO / "assets/data/arith_sft_train.jsonl").read_text().splitlines()
            if line.strip()]
    with open(folder / f"{DATASET}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"messages": r["messages"]}) + "\n")
    info = {DATASET: {"file_name": f"{DATASET}.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant", "system_tag": "system"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=1))
    return folder


def lf_config(model_dir: Path, data_dir: Path, out: Path, regime: str, s: dict) -> dict:
    cfg = {
        "model_name_or_path": str(model_dir), "trust_remote_code": False,
        "stage": "sft", "do_train": True, "finetuning_type": regime,
        "dataset": DATASET, "dataset_dir": str(data_dir), "template": TEMPLATE, "cutoff_len": s["max_len"],
        "overwrite_cache": True, "output_dir": str(out), "logging_steps": 5, "save_strategy": "no",
        "plot_loss": False, "report_to": "none", "per_device_train_batch_size": s["batch_size"],
        "gradient_accumulation_steps": 1, "learning_rate": s["learning_rate"], "max_steps": s["steps"],
        "lr_scheduler_type": s["scheduler"], "warmup_steps": s["warmup_steps"], "seed": s["seed"],
        "bf16": False, "fp16": False, "dataloader_num_workers": 0, "disable_tqdm": True,
    }
    if regime == "lora":
        cfg.update(lora_rank=s["lora_r"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                   lora_target="all")
    return cfg


def run_lf(tmp: Path, lf_cli: Path, model_dir: Path, data_dir: Path, regime: str, s: dict, i: int,
           env: dict) -> dict:
    work = tmp / f"lf-{regime}-{i}"
    work.mkdir()
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(lf_config(model_dir, data_dir, work / "out", regime, s), sort_keys=False))
    wall = timed_run([str(lf_cli), "train", str(config)], env=env, log=work / "lf.log", cwd=work)
    results = json.loads((work / "out" / "train_results.json").read_text())
    res = {"wall": wall, "train": results["train_runtime"], "samples": s["steps"] * s["batch_size"]}
    shutil.rmtree(work, ignore_errors=True)
    return res


def lf_problem(lf_venv: Path) -> str | None:
    cli = lf_venv / "bin" / "llamafactory-cli"
    if not cli.exists():
        return (f"LlamaFactory is not installed in {lf_venv} (no bin/llamafactory-cli): run "
                "`bash bench/setup_llamafactory.sh` first")
    return None


def lf_versions(lf_venv: Path) -> dict:
    code = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('llamafactory', 'torch', 'transformers', 'trl', 'peft', 'datasets')}))")
    try:
        return json.loads(subprocess.run([str(lf_venv / "bin" / "python"), "-c", code], capture_output=True,
                                         text=True, timeout=120).stdout)
    except Exception as exc:  # noqa: BLE001 - versions are informative only
        return {"error": str(exc)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", default="lora,full")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both sides (0: library default)")
    p.add_argument("--lf-venv", default=str(REPO / ".bench-venv"))
    args = p.parse_args()
    lf_venv = Path(args.lf_venv).resolve()
    s = common_settings(args)
    problem = lf_problem(lf_venv)
    if problem:
        print("LlamaFactory side not run:", problem, flush=True)
    env = bench_env(args.threads or None)
    lf_env = bench_env(args.threads or None, DISABLE_VERSION_CHECK="1", LLAMAFACTORY_VERBOSITY="WARN",
                       PYTHONPATH="", USE_MODELSCOPE_HUB="0")
    out = {"settings": {**s, "repeats": args.repeats, "threads": args.threads}, "jobs": {},
           "llamafactory_versions": None if problem else lf_versions(lf_venv)}
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-vs-lf-"))
    try:
        model_dir = save_tiny_model(tmp / "model")
        data_dir = lf_dataset_dir(tmp)
        for regime in [j.strip() for j in args.jobs.split(",") if j.strip()]:
            sides = {"studio": lambda i, r=regime: run_studio(tmp, model_dir, r, s, i, env)}
            errors = {}
            if not problem:
                def lf(i, r=regime):
                    if "llamafactory" in errors:
                        return None
                    try:
                        return run_lf(tmp, lf_venv / "bin" / "llamafactory-cli", model_dir, data_dir, r, s, i, lf_env)
                    except (RunFailed, FileNotFoundError, KeyError) as exc:
                        errors["llamafactory"] = str(exc)[-1500:]
                        print(f"LlamaFactory failed ({r}):\n{errors['llamafactory']}", flush=True)
                        return None
                sides["llamafactory"] = lf

            def show(name, i, r, regime=regime):
                if r:
                    print(f"  {regime} round {i + 1} {name:<12} wall {r['wall']:6.1f} s  train {r['train']:6.1f} s",
                          flush=True)

            res = interleaved(sides, args.repeats, show)
            job = {}
            for name, rs in res.items():
                rs = [r for r in rs if r]
                job[name] = {"wall_s": median([r["wall"] for r in rs]), "train_s": median([r["train"] for r in rs]),
                             "samples_per_s": median([r["samples"] / r["train"] for r in rs if r["train"]]),
                             "runs": len(rs)} if rs else None
            job["llamafactory_error"] = errors.get("llamafactory") or problem
            lf_res = job.get("llamafactory")
            job["wall_ratio"] = ratio(job["studio"]["wall_s"], lf_res["wall_s"]) if lf_res else None
            out["jobs"][regime] = job
            for name in ("studio", "llamafactory"):
                r = job.get(name)
                rows.append([f"{regime}: {name}", r["wall_s"] if r else None, r["train_s"] if r else None,
                             r["samples_per_s"] if r else None])
            rows.append([f"{regime}: studio / LF", job["wall_ratio"],
                         ratio(job["studio"]["train_s"], lf_res["train_s"]) if lf_res else None,
                         ratio(job["studio"]["samples_per_s"], lf_res["samples_per_s"]) if lf_res else None])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(table([f"median of {args.repeats}, {args.steps} steps", "wall s", "train s", "samples/s"], rows))
    print("target: studio wall <= 0.75x LlamaFactory's")
    if problem:
        print("LlamaFactory side not run:", problem)
    path = write_json("vs_llamafactory", out)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
