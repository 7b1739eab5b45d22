"""The speed options of train.* (#26) as transformers/trl arguments: each is the
library's own switch, passed through; studio.hardware and the spec's validation refuse
what this machine cannot run before a worker starts. Imported only by the worker."""
from __future__ import annotations

from studio.methods.context import TrainContext

# torch.compile costs about a minute for a 1B model before the first step; at the ~1.2-1.8x
# faster steps measured (NOTES-training-libs: 1.8x on CPU after 35-55 s) it repays itself
# after a few hundred steps, so "auto" compiles GPU runs at least this long.
COMPILE_MIN_STEPS = 300


def use_compile(ctx: TrainContext) -> bool:
    t = ctx.spec.train
    if t.torch_compile != "auto":
        return t.torch_compile == "on"
    return ctx.device == "cuda" and t.max_steps >= COMPILE_MIN_STEPS


def speed_kwargs(ctx: TrainContext) -> dict:
    """TrainingArguments/SFTConfig fields (make_config keeps those the config class has:
    padding_free reaches SFTConfig only)."""
    t = ctx.spec.train
    kw = dict(use_liger_kernel=t.use_liger_kernel, padding_free=t.padding_free,
              torch_compile=use_compile(ctx))
    if t.group_by_length:
        kw["train_sampling_strategy"] = "group_by_length"
    if ctx.device == "cuda":
        # transformers raises on tf32=True where there is no TF32 (CPU, pre-Ampere GPUs)
        from studio.hardware import supports_tf32

        kw["tf32"] = bool(t.tf32 and supports_tf32())
    return kw


def attn_implementation(ctx: TrainContext) -> str | None:
    """The attention kernel to set on a transformers model; None keeps the model's own
    (the studio's architecture always runs SDPA; auto = sdpa, transformers' default)."""
    chosen = ctx.spec.train.attn_implementation
    return None if chosen == "auto" else chosen


def apply_attention(model, ctx: TrainContext):
    chosen = attn_implementation(ctx)
    if chosen is None or getattr(model.config, "model_type", "") == "studio":
        return model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(chosen)
    print(f"Attention: {chosen} (train.attn_implementation)", flush=True)
    return model
