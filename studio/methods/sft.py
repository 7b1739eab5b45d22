"""Supervised fine-tuning in every parameter regime, through trl's SFTTrainer.

The regime (full, freeze, LoRA, DoRA, QLoRA, prefix, prompt, IA3) is applied by
studio.model.apply_regime before the trainer sees the model, so every method shares
one implementation of the regimes."""
from __future__ import annotations

from studio.methods import common
from studio.methods.context import TrainContext


def train(ctx: TrainContext) -> None:
    from trl import SFTConfig, SFTTrainer

    tokenizer = common.load_tokenizer(ctx)
    data = common.load_data(ctx, ("conversation",))
    model = common.load_model(ctx, tokenizer)
    spec = ctx.spec
    has_generation_marks = common.has_generation_marks(tokenizer)
    # prompt-style adapters prepend virtual tokens; peft pads the labels for them with -100,
    # so the assistant mask still lines up
    assistant_only = spec.data.assistant_only_loss and has_generation_marks
    args = common.make_config(
        SFTConfig, ctx, data.eval,
        max_length=spec.model.max_seq_len,
        packing=spec.data.packing,
        assistant_only_loss=assistant_only,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                         processing_class=tokenizer, callbacks=ctx.callbacks,
                         **common.optimizer_kwargs(ctx))
    common.train_and_save(ctx, trainer, tokenizer)
