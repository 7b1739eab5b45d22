"""Does a recommendation fit the device? The estimate (studio.estimate) of a method +
regime + batch at the data's sequence length, with the fallbacks tried in the issue's
order until it fits: gradient checkpointing, the 8-bit optimizer, a smaller micro-batch
with more accumulation (the effective batch stays), then a leaner regime (QLoRA), and,
where nothing fits, what an offloaded run or a bigger device would need."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from studio.advisor.decide import HEADROOM
from studio.hardware import GPUS
from studio.units import GIB, gib

MICRO_BATCH_CAP = 16  # rows per forward: beyond this, padding waste outgrows the speed-up
PAIRED = ("dpo", "orpo", "simpo", "reward")  # two sequences (chosen, rejected) per row
REFERENCE = ("dpo", "kto")  # a frozen reference copy when the policy trains whole
OFFLOAD_NOTE = ("DeepSpeed ZeRO-Offload keeps gradients and optimizer states in CPU RAM; the studio does "
                "not set it up for one device, so it is named, not chosen")


@dataclass
class Fit:
    """One configuration's memory need against the device, and how it was reached."""

    regime: str
    batch_size: int  # rows per forward (micro-batch)
    grad_accum: int
    gradient_checkpointing: bool
    optimizer: str
    need: int  # bytes of the estimated peak
    device: int | None
    breakdown: dict = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)  # in words, in the order applied

    @property
    def fits(self) -> bool:
        return bool(self.device) and self.need <= HEADROOM * self.device

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"fits": self.fits, "share": self.share()}

    def share(self) -> str:
        if not self.device:
            return f"{gib(self.need, 1)} (device memory unknown)"
        return f"{gib(self.need, 1)} of {gib(self.device, 1)} ({self.need / self.device:.0%})"


def _method_spec(fields: dict, regime: str):
    from studio.spec import MethodSpec

    known = {f.name for f in dataclasses.fields(MethodSpec)}
    values = {k.split(".", 1)[1]: v for k, v in fields.items() if k.startswith("method.")}
    spec = MethodSpec(**{k: v for k, v in values.items() if k in known})
    spec.regime = regime
    return spec


def measure(model, method: str, regime: str, fields: dict, *, batch: int, seq_len: int | None, dtype: str,
            checkpointing: bool, optimizer: str, params: int | None = None) -> tuple[int, dict]:
    """(bytes, breakdown) of one training step by the estimate: pair methods run two
    sequences per row; DPO/KTO training the whole model also hold a frozen 16-bit reference."""
    from studio.estimate import estimate_memory

    spec = _method_spec(fields, regime)
    rows = batch * (2 if method in PAIRED else 1)
    memory = estimate_memory(model, spec, None, seq_len=seq_len, batch_size=rows, dtype=dtype,
                             optimizer=optimizer, gradient_checkpointing=checkpointing)
    breakdown = {k: memory[k] for k in ("weights", "gradients", "optimizer", "activations")}
    if method in REFERENCE and regime in ("full", "freeze") and params:
        breakdown["reference"] = params * 2
    return sum(breakdown.values()), breakdown


def _micro_batches(effective: int) -> list[int]:
    """Powers of two from min(effective, the cap) down to 1."""
    b, out = 1, []
    while b <= min(effective, MICRO_BATCH_CAP):
        out.append(b)
        b *= 2
    return out[::-1] or [1]


def fit_regime(model, method: str, regime: str, fields: dict, device: int | None, *, effective_batch: int,
               seq_len: int | None, dtype: str = "bf16", optimizer: str = "adamw", params: int | None = None) -> Fit:
    """The first configuration of `regime` that fits the device, trying the fallbacks in
    order (checkpointing, 8-bit optimizer, smaller micro-batch with accumulation); when
    none fits, the leanest one (its need says by how much)."""
    micro = _micro_batches(effective_batch)
    tries = [(micro[0], False, optimizer, []), (micro[0], True, optimizer, ["gradient checkpointing"])]
    if optimizer == "adamw":
        tries.append((micro[0], True, "adamw_8bit", ["gradient checkpointing", "8-bit AdamW"]))
    lean_opt, lean_steps = tries[-1][2], tries[-1][3]
    for b in micro[1:]:
        tries.append((b, True, lean_opt, lean_steps + [f"micro-batch {b} x {effective_batch // b} accumulation"]))
    last = None
    for b, ckpt, opt, steps in tries:
        need, breakdown = measure(model, method, regime, fields, batch=b, seq_len=seq_len, dtype=dtype,
                                  checkpointing=ckpt, optimizer=opt, params=params)
        last = Fit(regime, b, max(1, effective_batch // b), ckpt, opt, need, device, breakdown, steps)
        if device is None or last.fits:
            return last
    return last


def offload_need(fit: Fit) -> int:
    """What the device holds when gradients and optimizer states live in CPU RAM."""
    return fit.need - fit.breakdown.get("gradients", 0) - fit.breakdown.get("optimizer", 0)


def device_that_fits(need: int) -> str:
    """The smallest common GPU (studio.hardware.GPUS) the need fits under the planning
    limit, or how many of the largest it would take, sharded (ZeRO-3 / FSDP)."""
    for name, (gb, _) in sorted(GPUS.items(), key=lambda kv: kv[1][0]):
        if need <= HEADROOM * gb * GIB:
            return f"a {name.split(': ', 1)[1]} ({gb} GB)"
    name, (gb, _) = max(GPUS.items(), key=lambda kv: kv[1][0])
    count = -(-need // int(HEADROOM * gb * GIB))
    return f"{count} x {name.split(': ', 1)[1]} ({gb} GB each) with the model sharded (train.distributed: zero3)"


def plan_fit(a, method: str, regime: str, fields: dict) -> Fit:
    """fit_regime for the Answers' model, device, sequence length and precision, with the
    recipe's effective batch."""
    effective = fields.get("train.batch_size", 1) * fields.get("train.grad_accum", 1)
    return fit_regime(a.model, method, regime, fields, a.device_memory_bytes, effective_batch=effective,
                      seq_len=a.seq_len, dtype=a.precision or "bf16", params=a.model_size_params)


def lean_needs(a) -> dict[str, int]:
    """Bytes each of full / LoRA / QLoRA needs for instruction tuning at its first fitting
    configuration (or its leanest, when none fits): the figures the regime question weighs."""
    from studio.advisor.recipe import recipe, size_bucket

    bucket = size_bucket(a.model_size_params, a.from_scratch)
    out = {}
    for regime in ("full", "lora", "qlora"):
        fields = recipe("sft", regime, bucket, rows=a.data_rows)
        out[regime] = plan_fit(a, "sft", regime, fields).need
    return out
