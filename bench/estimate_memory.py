"""Estimated vs measured training memory: studio.estimate against real steps.

Run from the repository root:

    .venv/bin/python bench/estimate_memory.py            # full, LoRA, QLoRA at three sizes
    .venv/bin/python bench/estimate_memory.py --quick    # the smallest size only
    .venv/bin/python bench/estimate_memory.py --precision bf16   # mixed precision (autocast)
    .venv/bin/python bench/estimate_memory.py --out runs/bench/memory.json

For each case it builds the model, applies the regime, runs two optimizer steps and
measures on CPU:
  weights / gradients / optimizer: bytes of the unique storages the model, its .grad and
      the optimizer state hold after the step (4-bit quantisation state included);
  activations: the peak of live storages created during forward+backward that do not
      end up as gradients (a TorchDispatchMode that logs every allocation and free;
      views of pre-existing weights are not new memory).
On a CUDA machine it also reports torch.cuda.max_memory_allocated over the step minus
what was allocated before it (activations + gradients + the step's temporaries).
It prints a table (estimate / measured / ratio per part) and writes the rows as JSON.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studio import estimate as est  # noqa: E402
from studio.spec import MethodSpec, ModelSpec, TrainSpec  # noqa: E402


class AllocationLog(TorchDispatchMode):
    """Logs the creation and the free of every storage made inside the mode. Storages
    that existed before (weights, optimizer state) are skipped, so a view such as w.t()
    is not mistaken for new memory."""

    def __init__(self, existing=()):
        super().__init__()
        self.log: list[tuple[int, int]] = []
        self.alive: set[int] = set()
        self.old = {t.untyped_storage()._cdata for t in existing if isinstance(t, torch.Tensor)}

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.alive or key in self.old:
            return
        n = storage.nbytes()
        self.alive.add(key)
        self.log.append((key, n))

        def freed(k=key, n=n):
            if k in self.alive:
                self.alive.discard(k)
                self.log.append((k, -n))
        weakref.finalize(storage, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t)
        return out

    def peak_excluding(self, tensors) -> int:
        """Peak live bytes, leaving out the storages that end up as `tensors` (gradients)."""
        keys = {t.untyped_storage()._cdata for t in tensors if t is not None}
        last = {k: i for i, (k, n) in enumerate(self.log) if n > 0 and k in keys}
        skip, skipping, live, peak = set(last.values()), set(), 0, 0
        for i, (k, n) in enumerate(self.log):
            if i in skip:
                skipping.add(k)
                continue
            if n < 0 and k in skipping:
                skipping.discard(k)
                continue
            live += n
            peak = max(peak, live)
        return peak


def quant_tensors(model) -> list:
    out = []
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        while state is not None:
            out += [getattr(state, name, None) for name in ("absmax", "code", "offset")]
            state = getattr(state, "state2", None)
    return [t for t in out if isinstance(t, torch.Tensor)]


def storage_bytes(tensors, seen: set) -> int:
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


def held_bytes(model, optimizer) -> dict:
    seen: set = set()
    return {
        "weights": storage_bytes(list(model.parameters()) + quant_tensors(model), seen),
        "gradients": storage_bytes([p.grad for p in model.parameters() if p.grad is not None], seen),
        "optimizer": storage_bytes([v for s in optimizer.state.values() for v in s.values()], seen),
    }


def activation_peak(model, ids, mask, optimizer, checkpointing: bool = False,
                    autocast: torch.dtype | None = None) -> tuple[int, dict]:
    """(activation peak bytes, held bytes after the step), measured on the second step.
    autocast: run the forward under torch.autocast (mixed precision, as the Trainer does)."""
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    peak = 0
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        existing = (list(model.parameters()) + list(model.buffers()) + quant_tensors(model)
                    + [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)])
        with AllocationLog(existing) as log:
            with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
            loss.backward()
            del loss
        peak = log.peak_excluding([p.grad for p in model.parameters()])
        held = held_bytes(model, optimizer)
        optimizer.step()
    return peak, held


def cuda_step_peak(model, ids, mask, optimizer) -> int:
    """max_memory_allocated during forward+backward minus what was allocated before."""
    model.train()
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        optimizer.step()
    return peak


SIZES = {
    "small": dict(vocab_size=512, d_model=128, n_heads=4, n_kv_heads=2, d_ff=352, n_layers=4),
    "medium": dict(vocab_size=2048, d_model=256, n_heads=8, n_kv_heads=4, d_ff=704, n_layers=4),
    "large": dict(vocab_size=4096, d_model=512, n_heads=8, n_kv_heads=2, d_ff=1408, n_layers=6),
}
ARCHS = {"llama": {}, "studio": dict(positional_encoding="alibi", norm="layernorm", activation="gelu")}
REGIMES = {"full": MethodSpec(regime="full"), "lora": MethodSpec(regime="lora", lora_r=16),
           "qlora": MethodSpec(regime="qlora", lora_r=16)}


def run_case(size: str, arch: str, regime: str, batch: int, seq: int, checkpointing: bool, device: str,
             precision: str = "fp32") -> dict:
    """One row. precision bf16 runs as the studio's worker does: autocast over fp32
    trained weights, a frozen base stored in bf16."""
    import studio.model as sm

    spec = ModelSpec(**SIZES[size], **ARCHS[arch], max_seq_len=seq)
    method = REGIMES[regime]
    train = TrainSpec(batch_size=batch, optimizer="adamw", precision=precision,
                      gradient_checkpointing="on" if checkpointing else "off")
    half = precision == "bf16"
    dtype = "bf16" if half and regime != "full" else "fp32"
    torch.manual_seed(0)
    model = sm.apply_regime(sm.build_or_load(spec, None, method, dtype=dtype,
                                             device=device if regime == "qlora" else "cpu"), method)
    ids = torch.randint(0, spec.vocab_size, (batch, seq))
    mask = torch.ones_like(ids)
    mask[0, : seq // 4] = 0  # padded batches, as trainers make them
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    guess = est.estimate_memory(spec, method, train)
    t0 = time.time()
    peak, held = activation_peak(model, ids, mask, optimizer, checkpointing, torch.bfloat16 if half else None)
    row = {"size": size, "arch": arch, "regime": regime, "batch": batch, "seq": seq, "precision": precision,
           "checkpointing": checkpointing, "parameters": est.count_parameters(spec)["total"],
           "estimate": {k: guess[k] for k in ("weights", "gradients", "optimizer", "activations", "total")},
           "measured": {**held, "activations": peak, "total": sum(held.values()) + peak},
           "seconds": round(time.time() - t0, 2)}
    if device == "cuda" and regime != "qlora":
        gpu_model = model.to("cuda")
        gpu_opt = torch.optim.AdamW([p for p in gpu_model.parameters() if p.requires_grad], lr=1e-4)
        row["cuda_step_peak"] = cuda_step_peak(gpu_model, ids.cuda(), mask.cuda(), gpu_opt)
        row["estimate_activations_plus_gradients"] = guess["activations"] + guess["gradients"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the small size")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: autocast over fp32 trained weights, as the studio trains")
    parser.add_argument("--out", default="runs/bench/estimate_memory.json")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = ["small"] if args.quick else list(SIZES)
    rows = []
    header = f"{'case':32s} {'part':12s} {'estimate':>12s} {'measured':>12s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    for size in sizes:
        for arch in ARCHS:
            for regime in REGIMES:
                for ckpt in (False, True) if regime != "qlora" else (False,):
                    row = run_case(size, arch, regime, args.batch, args.seq, ckpt, device, args.precision)
                    rows.append(row)
                    name = f"{size}/{arch}/{regime}{'/ckpt' if ckpt else ''}"
                    for part in ("weights", "gradients", "optimizer", "activations", "total"):
                        e, m = row["estimate"][part], row["measured"][part]
                        ratio = e / m if m else float("nan")
                        print(f"{name:32s} {part:12s} {e:12,d} {m:12,d} {ratio:7.3f}")
                        name = ""
                    if "cuda_step_peak" in row:
                        e, m = row["estimate_activations_plus_gradients"], row["cuda_step_peak"]
                        print(f"{'':32s} {'cuda step':12s} {e:12,d} {m:12,d} {e / m:7.3f}")
                    sys.stdout.flush()
    worst = max(abs(r["estimate"]["activations"] / r["measured"]["activations"] - 1) for r in rows)
    exact = all(r["estimate"][k] == r["measured"][k] for r in rows for k in ("weights", "gradients", "optimizer"))
    print(f"\nweights/gradients/optimizer exact: {exact}; worst activation error: {worst:.1%}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
