"""Reward modelling: a one-score classification head on a causal base, trained on
preference pairs by trl's RewardTrainer (Bradley-Terry loss). trl logs accuracy
(chosen scored above rejected), margin and min/mean/max_reward.

final/ holds an AutoModelForSequenceClassification (or, with LoRA/DoRA/QLoRA, a
SEQ_CLS adapter whose modules_to_save carries the head) plus the tokenizer;
studio.methods.reward_model.load_reward_model turns it into the reward of GRPO/PPO
(`method.reward = "model:<this run dir>"`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from studio.data.mix import map_procs
from studio.methods import common
from studio.methods.context import TrainContext

HEAD_NAMES = ("score", "classifier")  # the head's module name in transformers' classifiers


def base_folder(ctx: TrainContext, tokenizer) -> str:
    """A folder or hub id AutoModelForSequenceClassification can load the backbone from.
    An adapter run is merged and saved once under run_dir/base (an adapter reward
    model names it as its base, so it must outlive the run)."""
    from studio.model import build_or_load, resolve_model_path

    spec = ctx.spec.model
    if spec.source == "pretrained":
        where, is_adapter = resolve_model_path(spec.name_or_path)
        if not is_adapter:
            return where
    base = ctx.run_dir / "base"
    if not (base / "config.json").is_file():
        from studio.spec import MethodSpec

        model = build_or_load(spec, tokenizer, MethodSpec(regime="full"), device="cpu")
        model.save_pretrained(base, safe_serialization=True)
    return str(base)


def load_classifier(ctx: TrainContext, tokenizer):
    import torch
    from transformers import AutoModelForSequenceClassification

    import studio.model  # noqa: F401  (registers the studio architecture)
    from studio.model.load import quantization_config

    where = base_folder(ctx, tokenizer)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(ctx.precision, torch.float32)
    kwargs = dict(num_labels=1, use_safetensors=True, dtype=dtype,
                  trust_remote_code=ctx.spec.model.trust_remote_code)
    if ctx.spec.method.regime == "qlora":
        kwargs.update(quantization_config=quantization_config(ctx.spec.method, dtype), device_map={"": ctx.device})
    from studio.model.classifier import ensure_sequence_classifier

    # Granite & co. have no classifier in transformers: the generic score head on their trunk
    ensure_sequence_classifier(where, ctx.spec.model.trust_remote_code)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(where, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        raise ValueError(f"model.name_or_path: '{ctx.spec.model.name_or_path}' has no sequence-classification "
                         "variant in transformers and no trunk (AutoModel) to put a score head on, so it cannot "
                         "carry a reward head; build the base with a standard architecture (rope, rmsnorm, "
                         "swiglu: Llama) or pick another model") from None
    if ctx.spec.method.regime != "qlora":
        model = model.to(ctx.device)
    # The head reads the last non-pad token, so it must know which id is padding.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def apply_reward_regime(model, ctx: TrainContext):
    """The regime for a classifier: the head always trains (it starts random)."""
    from studio.model import apply_regime, peft_config_for

    method = ctx.spec.method
    if method.regime in ("full", "freeze"):
        model = apply_regime(model, method, ctx.spec.model)
        for name, param in model.named_parameters():
            if name.split(".")[0] in HEAD_NAMES:
                param.requires_grad_(True)
        return model
    from peft import TaskType, get_peft_model, prepare_model_for_kbit_training

    # SEQ_CLS makes peft train and save the head alongside the adapter.
    config = dataclasses.replace(peft_config_for(method, model), task_type=TaskType.SEQ_CLS)
    if method.regime == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    from studio.model.adapted import adapted_summary, describe_adapted

    model = get_peft_model(model, config)
    print(describe_adapted(adapted_summary(model, method.regime)), flush=True)
    return model


def train(ctx: TrainContext) -> None:
    from trl import RewardConfig, RewardTrainer

    from studio.methods.preference import with_optimizer

    tokenizer = common.load_tokenizer(ctx)
    data = common.load_data(ctx, ("preference",))
    model = apply_reward_regime(load_classifier(ctx, tokenizer), ctx)
    args = common.make_config(RewardConfig, ctx, data.eval, max_length=ctx.spec.model.max_seq_len,
                              dataset_num_proc=map_procs(data.train))
    if args.load_best_model_at_end:
        args.metric_for_best_model, args.greater_is_better = "eval_accuracy", True
    trainer = RewardTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                            processing_class=tokenizer, callbacks=ctx.callbacks)
    common.train_and_save(ctx, with_optimizer(trainer, ctx), tokenizer)
    final = Path(ctx.final_dir)
    if final.is_dir():
        print(f"Reward model saved: use it with method.reward=model:{ctx.run_dir}", flush=True)
