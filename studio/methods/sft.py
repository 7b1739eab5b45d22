"""Supervised fine-tuning in every parameter regime, through trl's SFTTrainer.

The regime (full, freeze, LoRA, DoRA, QLoRA, prefix, prompt, IA3) is applied by
studio.model.apply_regime before the trainer sees the model, so every method shares
one implementation of the regimes."""
from __future__ import annotations

import functools

from studio.data.mix import map_procs
from studio.methods import common
from studio.methods.context import TrainContext
from studio.methods.sft_tokens import drop_untrained, tokenise_chats


def train(ctx: TrainContext) -> None:
    from trl import SFTConfig, SFTTrainer

    tokenizer = common.load_tokenizer(ctx)
    spec = ctx.spec
    # prompt-style adapters prepend virtual tokens; peft pads the labels for them with -100,
    # so the assistant mask still lines up
    assistant_only = spec.data.assistant_only_loss and common.has_generation_marks(tokenizer)
    block = spec.model.max_seq_len
    tokenise = functools.partial(tokenise_chats, tokenizer=tokenizer, max_length=block,
                                 assistant_only=assistant_only, keep_untrained=True)
    data = common.load_data(ctx, ("conversation",), prepare=tokenise)
    train_ds = drop_untrained(data.train)
    # tokenised after load_data cut it to eval_steps batches, not before
    eval_ds = tokenise_chats(data.eval, tokenizer, block, assistant_only) if data.eval is not None else None
    _say_dropped(data.train, train_ds, block)
    model = common.load_model(ctx, tokenizer)
    args = common.make_config(
        SFTConfig, ctx, eval_ds,
        # the rows arrive tokenised, labelled and cut to the block: trl has only packing left
        # to do (max_length=None skips its per-row truncation pass)
        max_length=block if spec.data.packing else None,
        packing=spec.data.packing,
        dataset_num_proc=map_procs(train_ds),  # for packing
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, callbacks=ctx.callbacks,
                         **common.optimizer_kwargs(ctx))
    common.train_and_save(ctx, trainer, tokenizer)


def _say_dropped(before, after, block: int) -> None:
    try:
        dropped = len(before) - len(after)
    except TypeError:  # a stream: its length is unknown
        return
    if dropped:
        print(f"Data: {dropped} training rows left out: no assistant token within the first {block} tokens "
              "(model.max_seq_len)", flush=True)
