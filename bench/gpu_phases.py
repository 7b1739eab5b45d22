"""The phases of bench/gpu_check.py, each run in a child process of its own: every figure
is appended to the part file the moment it exists (one JSON object a line)."""
from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3


class Part:
    def __init__(self, path: Path):
        self.path = path

    def add(self, **row) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")


def run(name: str, part_path: Path, cpu: bool, model_configs) -> None:
    part = Part(part_path)
    device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    if not cpu and device == "cpu":
        part.add(case=name, skipped="no CUDA device: run with --cpu for the toy sizes")
        return
    {"env": env, "memory": memory, "throughput": throughput, "chat": chat, "oom": oom}[name](
        part, device, model_configs(cpu))


def env(part: Part, device: str, configs: dict) -> None:
    import transformers

    from studio import hardware

    row = dict(case="env", device=device, torch=torch.__version__, transformers=transformers.__version__,
               python=sys.version.split()[0],
               packages={p: importlib.util.find_spec(p) is not None for p in ("trl", "datasets", "bitsandbytes",
                                                                                "liger_kernel", "flash_attn", "deepspeed")})
    if device == "cuda":
        row.update(gpu=torch.cuda.get_device_name(0), capability=torch.cuda.get_device_capability(0),
                   memory_gib=round(torch.cuda.get_device_properties(0).total_memory / GIB, 1),
                   bf16=torch.cuda.is_bf16_supported(), tf32_capable=hardware.supports_tf32())
    part.add(**row)


# -- memory: measured peak vs the estimate ------------------------------------------


def memory_cases(cpu: bool, names: list[str]):
    """(shape, regime, seq, checkpointing, liger)."""
    if cpu:
        return [(names[0], r, s, c, False) for r in ("full", "lora") for s in (64, 256) for c in (False, True)]
    cases = [(n, r, 2048, False, False) for n in names for r in ("full", "lora", "qlora")]
    cases += [("llama-3.2-1b", "lora", s, c, lg) for s in (512, 2048, 8192) for c in (False, True)
              for lg in (False, True)]
    cases += [("llama-3-8b", "lora", 8192, True, lg) for lg in (False, True)]
    return cases


def _model(cfg: dict, regime: str, device: str, folder_for: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    from studio.model import apply_regime
    from studio.spec import MethodSpec, ModelSpec

    method = MethodSpec(regime=regime, lora_r=16, lora_dropout=0.0)
    config = AutoConfig.for_model(**cfg)
    if regime == "qlora":  # bitsandbytes quantises while loading: through a saved folder
        from studio.model import build_or_load

        key = json.dumps(cfg, sort_keys=True)
        if key not in folder_for:
            folder_for[key] = tempfile.mkdtemp()
            AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder_for[key])
        model = build_or_load(ModelSpec(source="pretrained", name_or_path=folder_for[key]), None, method,
                              dtype="bf16" if device == "cuda" else None, device=device)
    else:
        # the studio worker's mixed precision: trained weights fp32, a frozen base in bf16
        dtype = torch.bfloat16 if regime != "full" and device == "cuda" else torch.float32
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return apply_regime(model, method, ModelSpec(source="pretrained", name_or_path="x")), method


def _step_peak(model, ids, device: str, checkpointing: bool) -> int:
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], fused=device == "cuda")
    peak = 0
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
    return peak


def _cpu_peak(model, ids, checkpointing: bool) -> int:
    """CPU: the allocation tracker of bench/estimate_memory.py (activations) plus the
    weights, gradients and optimizer states held after the step."""
    loader = importlib.util.spec_from_file_location("bench_estimate_memory", ROOT / "bench" / "estimate_memory.py")
    bench = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(bench)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    acts, held = bench.activation_peak(model, ids, torch.ones_like(ids), opt, checkpointing)
    return acts + sum(held.values())


def memory(part: Part, device: str, configs: dict) -> None:
    from studio import estimate as est
    from studio.spec import TrainSpec

    capacity = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else None
    folders: dict = {}
    for name, regime, seq, ckpt, liger in memory_cases(device == "cpu", list(configs)):
        case = dict(case=f"{name}/{regime}/seq{seq}/ckpt{int(ckpt)}/liger{int(liger)}", model=name, regime=regime,
                    seq=seq, checkpointing=ckpt, liger=liger)
        cfg = configs[name]
        train = TrainSpec(batch_size=1, use_liger_kernel=liger, precision="bf16" if device == "cuda" else "fp32")
        from studio.spec import MethodSpec

        estimate = est.estimate_memory(cfg, MethodSpec(regime=regime, lora_r=16, lora_dropout=0.0), train,
                                       seq_len=seq, batch_size=1, gradient_checkpointing=ckpt, padded=False)["total"]
        case["estimate_gib"] = round(estimate / GIB, 3)
        if regime == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            part.add(**case, skipped="bitsandbytes is not installed (bring it with bench/gpu_wheels.sh)")
            continue
        if liger and (device != "cuda" or importlib.util.find_spec("liger_kernel") is None):
            part.add(**case, skipped="Liger needs CUDA and liger-kernel")
            continue
        if capacity and estimate > 0.9 * capacity:
            part.add(**case, skipped=f"estimate {estimate / GIB:.0f} GiB does not fit {capacity / GIB:.0f} GiB")
            continue
        try:
            model, _ = _model(cfg, regime, device, folders)
            if liger:
                from liger_kernel.transformers import _apply_liger_kernel_to_instance

                _apply_liger_kernel_to_instance(model=model.get_base_model() if hasattr(model, "get_base_model")
                                                else model)
            ids = torch.randint(0, cfg["vocab_size"], (1, seq), device=device)
            t0 = time.time()
            measured = _step_peak(model, ids, device, ckpt) if device == "cuda" else _cpu_peak(model, ids, ckpt)
            part.add(**case, measured_gib=round(measured / GIB, 3), ratio=round(estimate / measured, 3),
                     seconds=round(time.time() - t0, 1))
        except torch.OutOfMemoryError:
            part.add(**case, skipped="out of memory on the device")
        except Exception as exc:  # noqa: BLE001 - one case's failure is a figure, the rest go on
            part.add(**case, error=f"{type(exc).__name__}: {exc}"[:500], trace=traceback.format_exc()[-800:])
        finally:
            model = None
            if device == "cuda":
                torch.cuda.empty_cache()


# -- throughput: the studio worker vs a bare trl script ------------------------------


def _job(device: str, configs: dict):
    """(model folder, data file, steps, batch, seq, params) of the SFT job both run."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cpu = device == "cpu"
    name = next(iter(configs)) if cpu else "llama-3.2-1b"
    cfg = configs[name]
    work = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg), dtype=torch.bfloat16)
    model.save_pretrained(work / "model")
    AutoTokenizer.from_pretrained(ROOT / "assets" / "tokenizer").save_pretrained(work / "model")
    words = "the cat sat on a mat while seven birds sang over quiet hills near rivers".split()
    seq = 128 if cpu else 2048
    with (work / "data.jsonl").open("w") as f:
        for i in range(400):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(seq // 3 + (i % 5) * seq // 20))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Say {i}."},
                                             {"role": "assistant", "content": text}]}) + "\n")
    params = sum(p.numel() for p in model.parameters())
    return work, name, (10 if cpu else 30), (4 if cpu else 8), seq, params


def _studio_run(work: Path, steps: int, batch: int, seq: int, train: dict) -> dict:
    from studio import jobs
    from studio.metrics import read_all
    from studio.spec import RunSpec
    from studio.worker import run_method

    spec = RunSpec.from_dict({
        "name": "gpu-check", "model": {"source": "pretrained", "name_or_path": str(work / "model"), "max_seq_len": seq},
        "data": {"sources": [{"path": str(work / "data.jsonl")}], "eval_fraction": 0.0, "assistant_only_loss": False},
        "method": {"name": "sft"},
        "train": {"max_steps": steps, "batch_size": batch, "learning_rate": 1e-4, "log_every": 1, **train}})
    run_dir = jobs.create_run(spec, work / "runs")
    jobs.write_status(run_dir, state="running", started=time.time())
    code = run_method(spec, run_dir, lead=True)
    rows = read_all(run_dir)
    summary = next((r for r in rows if r["kind"] == "summary"), {})
    tokens = max((r.get("num_tokens", 0) for r in rows if r["kind"] == "train"), default=0)
    return {"exit": code, "runtime_s": summary.get("runtime"), "tokens": tokens,
            "error": jobs.read_status(run_dir).get("error")}


def _bare_trl(work: Path, steps: int, batch: int, seq: int, device: str) -> dict:
    """What a user would write: trl's defaults (bf16 on a GPU, checkpointing on)."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    data = load_dataset("json", data_files=str(work / "data.jsonl"), split="train")
    args = SFTConfig(output_dir=str(work / "bare"), max_steps=steps, per_device_train_batch_size=batch,
                     learning_rate=1e-4, max_length=seq, report_to=[], logging_steps=1, save_strategy="no",
                     use_cpu=device == "cpu", bf16=device == "cuda", disable_tqdm=True)
    trainer = SFTTrainer(model=str(work / "model"), args=args, train_dataset=data)
    out = trainer.train()
    tokens = max((r.get("num_tokens", 0) for r in trainer.state.log_history), default=0)
    return {"exit": 0, "runtime_s": out.metrics.get("train_runtime"), "tokens": tokens}


def throughput(part: Part, device: str, configs: dict) -> None:
    from studio.estimate import flops_per_token
    from studio.hardware import peak_tflops

    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        part.add(case="throughput", skipped="trl/datasets not installed (bring them with bench/gpu_wheels.sh)")
        return
    work, name, steps, batch, seq, params = _job(device, configs)
    peak = peak_tflops(torch.cuda.get_device_name(0)) * 1e12 if device == "cuda" else None
    fpt = flops_per_token(configs[name], seq_len=seq)
    variants = [("bare_trl_default", None), ("studio_same_as_trl", {"gradient_checkpointing": "on"}),
                ("studio_speed_options", {"gradient_checkpointing": "off", "padding_free": True,
                                          "use_liger_kernel": device == "cuda", "group_by_length": True})]
    for label, train in variants:
        try:
            got = _bare_trl(work, steps, batch, seq, device) if train is None else _studio_run(work, steps, batch,
                                                                                                seq, train)
            row = dict(case=label, model=name, steps=steps, batch=batch, seq=seq, **got)
            if got.get("runtime_s") and got.get("tokens"):
                tps = got["tokens"] / got["runtime_s"]
                row["tokens_per_s"] = round(tps, 1)
                if peak:
                    row["mfu"] = round(_flops(fpt) * tps / peak, 4)
            part.add(**row)
        except Exception as exc:  # noqa: BLE001
            part.add(case=label, error=f"{type(exc).__name__}: {exc}"[:500], trace=traceback.format_exc()[-800:])


def _flops(fpt) -> float:
    return float(fpt["training"] if isinstance(fpt, dict) else fpt)


# -- chat and the OOM path -----------------------------------------------------------


def chat(part: Part, device: str, configs: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio import inference

    work, name, *_ = _job(device, configs)
    n = 32 if device == "cpu" else 256
    loaded = inference.load(str(work / "model"), device=device)
    settings = inference.GenerationSettings(temperature=0.0, max_new_tokens=n)
    t0 = time.time()
    text = ""
    for text in inference.stream_chat(loaded, [{"role": "user", "content": "Tell me a story."}], settings):
        pass
    studio_s = time.time() - t0
    studio_tokens = len(loaded.tokenizer(text, add_special_tokens=False).input_ids)
    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model").to(device).eval()
    ids = tok("Tell me a story.", return_tensors="pt").input_ids.to(device)
    t0 = time.time()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    bare_s = time.time() - t0
    bare_tokens = out.shape[1] - ids.shape[1]
    part.add(case="chat", model=name, studio_tokens=studio_tokens, studio_tokens_per_s=round(studio_tokens / studio_s, 1),
             bare_tokens=bare_tokens, bare_tokens_per_s=round(bare_tokens / bare_s, 1))


def oom(part: Part, device: str, configs: dict) -> None:
    from studio.launch import fit_problems
    from studio.presets import load_model_preset
    from studio.spec import RunSpec

    spec = RunSpec(model=load_model_preset("llama-8b"))
    spec.train.batch_size, spec.model.max_seq_len = 64, 8192
    t0 = time.time()
    told = fit_problems(spec)
    part.add(case="oom_refused_before_start", seconds=round(time.time() - t0, 2), advice=" ".join(told)[:1500],
             ends_with_advice=bool(told) and "Settings that need less" in " ".join(told))
    if device != "cuda":
        part.add(case="oom_during_training", skipped="a real out-of-memory needs a GPU (CPU would swap, not raise)")
        return
    work, name, _, _, seq, _ = _job(device, configs)
    t0 = time.time()
    got = _studio_run(work, 2, 256, 8192, {"gradient_checkpointing": "off"})
    part.add(case="oom_during_training", seconds=round(time.time() - t0, 1), exit=got["exit"],
             advice=(got.get("error") or "")[:1500], ends_with_advice="Out of memory" in (got.get("error") or ""))
