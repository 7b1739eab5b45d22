"""The GPU path, measured in one command (#26): `make gpu-check` on a GPU machine,
`python bench/gpu_check.py --cpu` (toy sizes) in CI so the check cannot rot.

Each phase runs in a child process with its own timeout and appends its figures to the
JSON file as it goes, so a phase that hangs, runs out of memory or is killed leaves the
others' results (and its own so far) on disk:

  env         device, capability, versions, the packages the speed options need
  memory      torch.cuda.max_memory_allocated of one training step (random-init models of
              the Qwen2.5-0.5B, Llama-3.2-1B and Llama-3-8B shapes, read through the
              studio's own config reading) against studio.estimate, full/LoRA/QLoRA, seq
              512/2048/8192, with and without checkpointing and Liger: the ratio per case
  throughput  tokens/s and MFU of the studio worker vs a bare trl script on the same SFT
              job (model, data, steps), and with the speed options on
  chat        studio.inference's streamed chat vs a bare model.generate, tokens/s
  oom         a run that cannot fit ends as failed with the studio's advice, not a hang

On CPU (--cpu) the same phases run at toy sizes; what needs CUDA says 'skipped: reason'.
The GPU machine has no trl/datasets/bitsandbytes/liger-kernel and no registry: bring the
wheels from bench/gpu_wheels.sh and pass --wheels (they are installed first, offline).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = ("env", "memory", "throughput", "chat", "oom")
# seconds per phase on an H200 (total <= 8 minutes after start); --cpu scales them down
TIMEOUTS = {"env": 30, "memory": 170, "throughput": 170, "chat": 50, "oom": 50}
PACKAGES = ("trl", "datasets", "bitsandbytes", "liger_kernel", "flash_attn", "deepspeed")

# Model shapes: the studio's presets where it has them (presets/models), else the
# published config's numbers; all become configs through studio.estimate's reading.
QWEN_05B = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
            "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
            "tie_word_embeddings": True, "max_position_embeddings": 32768, "rope_theta": 1000000.0}
TOY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "tie_word_embeddings": True,
       "max_position_embeddings": 1024}


def model_configs(cpu: bool) -> dict[str, dict]:
    if cpu:  # the studio's tokenizer feeds it: its vocabulary, not a smaller one
        from studio.estimate import tokenizer_vocab_size

        return {"toy-llama": {**TOY, "vocab_size": tokenizer_vocab_size("assets/tokenizer")}}
    from studio.estimate import spec_config
    from studio.presets import load_model_preset

    return {"qwen2.5-0.5b": QWEN_05B,
            "llama-3.2-1b": spec_config(load_model_preset("llama-1b")),
            "llama-3-8b": spec_config(load_model_preset("llama-8b"))}


# -- the parent: phases in children, results merged into one JSON --------------------


def write(out: Path, results: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out)  # a reader never sees half a file


def run_phase(name: str, args, out: Path, results: dict) -> None:
    part = out.with_name(f"{out.stem}.{name}.jsonl")
    part.unlink(missing_ok=True)
    limit = max(5, int(TIMEOUTS[name] * args.scale))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--part", str(part)]
    cmd += ["--cpu"] if args.cpu else []
    start = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, start_new_session=True, cwd=ROOT)
        ended = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
    except subprocess.TimeoutExpired:
        ended = f"timed out after {limit} s"
    rows = [json.loads(line) for line in part.read_text().splitlines()] if part.exists() else []
    part.unlink(missing_ok=True)
    results["phases"][name] = {"status": ended, "seconds": round(time.time() - start, 1), "rows": rows}
    if not rows:
        results["phases"][name]["rows"] = [{"case": name, "skipped": f"no figure: {ended}"}]
    write(out, results)


def install_wheels(folder: str) -> str:
    """pip install the carried wheels, offline; what is already importable is left alone."""
    import importlib.util

    missing = [p for p in ("trl", "datasets", "bitsandbytes", "liger_kernel") if importlib.util.find_spec(p) is None]
    if not missing:
        return "nothing missing"
    missing = [p for p in missing if any(Path(folder).glob(f"{p}-*.whl"))]  # bitsandbytes may be left home
    if not missing:
        return f"no wheels for the missing packages in {folder}"
    # offline, resolving against what the machine has (torch, transformers, accelerate)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", folder, "--quiet",
                           *[p.replace("_", "-") for p in missing]], capture_output=True, text=True, timeout=240)
    return "installed" if proc.returncode == 0 else f"pip failed: {proc.stderr.strip()[-500:]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="toy sizes on CPU (what CI runs)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    ap.add_argument("--wheels", default="", help="folder of wheels from bench/gpu_wheels.sh, installed first")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--scale", type=float, default=None, help="multiply every phase's timeout")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--part", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        from bench import gpu_phases

        gpu_phases.run(args.phase, Path(args.part), args.cpu, model_configs)
        return 0
    args.scale = args.scale if args.scale is not None else (0.5 if args.cpu else 1.0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": "cpu" if args.cpu else "gpu", "phases": {}}
    if args.wheels:
        results["wheels"] = install_wheels(args.wheels)
    write(out, results)
    for name in args.phases.split(","):
        run_phase(name, args, out, results)
        print(f"{name}: {results['phases'][name]['status']} ({results['phases'][name]['seconds']} s)", flush=True)
    results["ended"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write(out, results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
