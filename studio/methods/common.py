"""What every Trainer-based method shares: spec -> trainer config, model + tokenizer +
data loading, resume, and saving final/. Imported only by the worker."""
from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from studio.methods.context import TrainContext

# The studio's option names -> transformers' (one place, so the UI names stay stable).
# adamw -> the fused kernel (transformers' own default since torch 2.8): the same updates,
# but the step of a small model is several times faster than the unfused one on CPU.
OPTIMIZERS = {"adamw": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit", "adafactor": "adafactor",
              "lion": "lion_32bit", "galore_adamw": "galore_adamw"}
# GaLore projects the gradients of the blocks' linear weights (transformers matches these
# against module names); embeddings, norms and the head keep plain AdamW
GALORE_TARGETS = [r".*attn.*", r".*mlp.*"]
SCHEDULERS = {"none": "constant_with_warmup", "cosine": "cosine", "linear": "linear",
              "polynomial": "polynomial"}


def config_kwargs(ctx: TrainContext, eval_dataset=None) -> dict:
    """TrainingArguments fields from the spec; valid for transformers and every trl config."""
    t = ctx.spec.train
    kw = dict(
        output_dir=str(ctx.checkpoints_dir),
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        lr_scheduler_type=SCHEDULERS[t.scheduler],
        # power 2: decays faster early than linear, yet reaches the end as smoothly (power 1 would
        # make "polynomial" a copy of "linear")
        lr_scheduler_kwargs={"power": 2.0} if t.scheduler == "polynomial" else {},
        warmup_steps=t.warmup_steps,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=ctx.precision == "bf16",
        fp16=ctx.precision == "fp16",
        use_cpu=ctx.device == "cpu",
        gradient_checkpointing=use_checkpointing(ctx),
        logging_steps=t.log_every,
        logging_first_step=True,
        # log a NaN/inf loss as it is (the default logs the window's average instead, 0.0 when
        # every step was NaN): the divergence guard and the charts need the truth
        logging_nan_inf_filter=False,
        report_to=[] if t.report_to == "none" else [t.report_to],
        disable_tqdm=True,
        save_strategy="steps" if t.save_every > 0 else "no",
        save_steps=t.save_every or 500,
        save_total_limit=2,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,  # tokenised in memory: workers only add start-up cost here
        remove_unused_columns=True,
    )
    from studio.methods.speed import speed_kwargs

    kw.update(speed_kwargs(ctx))  # Liger, padding-free, length grouping, compile, tf32 (#26)
    if t.optimizer in OPTIMIZERS:
        kw["optim"] = OPTIMIZERS[t.optimizer]
        if t.optimizer == "galore_adamw":
            kw["optim_target_modules"] = GALORE_TARGETS
    if eval_dataset is not None and t.eval_every > 0:
        kw.update(eval_strategy="steps", eval_steps=t.eval_every)
        if t.save_best_only:
            kw.update(save_strategy="steps", save_steps=t.eval_every, load_best_model_at_end=True,
                      metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=1)
    return kw


# Trainers whose batches carry no `input_ids`: transformers' token counter would warn on
# every step (it looks for input_ids), so it stays off; GRPO logs its own num_tokens.
NO_TOKEN_COUNT = ("GRPOConfig", "CPOConfig", "ORPOConfig")


def make_config(config_cls, ctx: TrainContext, eval_dataset=None, **method_kwargs):
    """Build a TrainingArguments/trl config, keeping only the fields that class has
    (the trl configs differ a little from each other and from transformers)."""
    kw = {**config_kwargs(ctx, eval_dataset), **method_kwargs}
    if config_cls.__name__ in NO_TOKEN_COUNT:
        kw["include_num_input_tokens_seen"] = "no"
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if "activation_checkpointing" in fields:
        # transformers 5 renamed it; the new name wins over trl's default gradient_checkpointing=True
        kw["activation_checkpointing"] = kw.pop("gradient_checkpointing")
    return config_cls(**{k: v for k, v in kw.items() if k in fields})


def has_generation_marks(tokenizer) -> bool:
    """Whether the chat template marks assistant turns ({% generation %}, with or without
    whitespace control), which trl's assistant_only_loss needs."""
    import re

    return re.search(r"{%-?\s*generation\s*-?%}", tokenizer.chat_template or "") is not None


def use_checkpointing(ctx: TrainContext) -> bool:
    mode = ctx.spec.train.gradient_checkpointing
    if mode != "auto":
        return mode == "on"
    if ctx.spec.method.regime == "prefix":
        return False  # peft prefix tuning breaks under checkpointing (tensor size mismatch)
    # Recomputing costs ~30% more compute: only when the estimate says memory is short.
    return bool(ctx.extras.get("memory_short", False))


def optimizer_kwargs(ctx: TrainContext) -> dict:
    """Trainer kwargs for optimizers transformers does not name (sophia, muon)."""
    name = ctx.spec.train.optimizer
    if name in OPTIMIZERS and not getattr(ctx.spec.method, "loraplus_ratio", 0):  # LoRA+ builds its own (#19)
        return {}
    from studio.optim import optimizer_cls_and_kwargs

    return {"optimizer_cls_and_kwargs": optimizer_cls_and_kwargs(name, ctx.spec.train, ctx.spec.method)}


def load_tokenizer(ctx: TrainContext):
    from studio.model import load_tokenizer

    return load_tokenizer(ctx.spec.model)


def load_model(ctx: TrainContext, tokenizer, apply_regime: bool = True):
    """The model the spec names (built or loaded), on the device, with its regime."""
    import torch

    from studio.model import apply_regime as _apply, build_or_load

    # Weights that train stay fp32 (the Trainer autocasts to bf16/fp16; pure half-precision
    # weights lose small updates and fp16 ones cannot be unscaled); a frozen base under an
    # adapter can sit in half precision and save the memory.
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(ctx.precision)
    frozen_base = ctx.spec.method.regime not in ("full", "freeze")
    dtype = half if half is not None and frozen_base else torch.float32
    # Seed before the weights are drawn (the Trainer seeds only later), so a spec reproduces
    # its run exactly, and adapters start from the same initialisation every time.
    from transformers import set_seed

    set_seed(ctx.spec.train.seed)
    model = build_or_load(ctx.spec.model, tokenizer, ctx.spec.method, dtype=dtype, device=ctx.device)
    if apply_regime:
        set_seed(ctx.spec.train.seed)
        model = _apply(model, ctx.spec.method, ctx.spec.model)
    from studio.methods.speed import apply_attention

    return apply_attention(model, ctx)  # train.attn_implementation (#26)


def load_data(ctx: TrainContext, kinds: tuple[str, ...] | None = None, prepare=None):
    """The run's blend (see studio.data.build; `prepare` maps its rows before blending)."""
    from studio.data import build
    from studio.methods import method

    bundle = build(ctx.spec, kinds or method(ctx.spec.method.name).data_kinds, prepare=prepare)
    ctx.extras.get("on_data", lambda b: None)(bundle)  # the worker reports rows dropped as bad
    print(f"Data: {len(bundle.train)} training rows ({bundle.kind})"
          + (f", {len(bundle.eval)} held out" if bundle.eval is not None else ""), flush=True)
    if bundle.eval is not None and ctx.spec.train.eval_steps > 0:
        # eval_steps is the number of eval batches (as in the seed docs), not a frequency
        limit = ctx.spec.train.eval_steps * ctx.spec.train.batch_size
        if len(bundle.eval) > limit:
            bundle.eval = bundle.eval.select(range(limit))
    return bundle


def resume_checkpoint(ctx: TrainContext) -> str | None:
    """The checkpoint to resume from; without optimizer state, a copy that lacks it
    (the Trainer then starts a fresh optimizer but keeps the step count and weights)."""
    src = ctx.spec.train.resume_from
    if not src:
        return None
    src_path = Path(src)
    if not src_path.is_dir():
        raise FileNotFoundError(src)
    from studio.model.load import require_checkpoint

    require_checkpoint(src_path, ctx.run_dir)  # safetensors weights; pickled state only from this run
    if ctx.spec.train.resume_optimizer:
        return str(src_path)
    dst = ctx.run_dir / "resume-weights-only"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src_path, dst, ignore=shutil.ignore_patterns("optimizer.pt", "scheduler.pt",
                                                                 "optimizer.bin", "scaler.pt"))
    return str(dst)


def run_trainer(ctx: TrainContext, trainer) -> None:
    """trainer.train (resuming when asked), with the divergence guard given the trainer:
    a rollback must also restart the Trainer's running loss, which a NaN poisons."""
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "DivergenceGuard":
            callback.trainer = trainer
    trainer.train(resume_from_checkpoint=resume_checkpoint(ctx))


def train_and_save(ctx: TrainContext, trainer, tokenizer) -> None:
    """Run the trainer (resuming when asked) and save final/ in save_pretrained format."""
    from studio.worker import stop_request

    run_trainer(ctx, trainer)
    if stop_request(ctx.run_dir) == "now":
        return  # "stop now": no final save, the person asked for the process to end
    save_final(ctx, trainer.model, tokenizer)


def save_final(ctx: TrainContext, model, tokenizer, extra: Callable[[Path], None] | None = None) -> Path:
    """final/ written whole or not at all: into a temporary sibling, renamed when complete
    (a full disk mid-save leaves no final/ that looks like a model), and never with
    non-finite weights (a diverged run fails instead of shipping NaNs). `extra(folder)`
    writes a method's own files (PPO's value head) into the same temporary folder."""
    from studio.divergence import Diverged, first_nonfinite
    from studio.runfiles import atomic_folder

    bad = first_nonfinite(model, trainable_only=False)
    if bad:
        raise Diverged(f"diverged: weight {bad} is not finite at the end of training. Fix: lower "
                       "train.learning_rate, or set train.on_divergence: rollback. No model was saved as final/.")
    if not world_process_zero():
        # the world's rank 0 writes final/ (on the main node); another node's ranks would
        # leave a final/ of tokenizer and spec in their own run dir, with no weights
        return ctx.final_dir
    with atomic_folder(ctx.final_dir) as folder:
        from studio.model.adapters import adapter_save_kwargs

        # PiSSA/OLoRA adapters saved as plain LoRA over the original base (#19)
        model.save_pretrained(folder, safe_serialization=True, **adapter_save_kwargs(model))
        tokenizer.save_pretrained(folder)
        ctx.spec.save(folder / "studio_spec.yaml")  # how it was made, for chains and the chat tab
        if extra is not None:
            extra(folder)
    return ctx.final_dir


def world_process_zero() -> bool:
    """True in the process that writes the run's files (the Trainer's is_world_process_zero):
    rank 0 of the whole launch across nodes, or the only process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
