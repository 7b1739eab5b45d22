"""Supervised fine-tuning in every parameter regime, through trl's SFTTrainer.

The regime (full, freeze, LoRA, DoRA, QLoRA, prefix, prompt, IA3) is applied by
studio.model.apply_regime before the trainer sees the model, so every method shares
one implementation of the regimes."""
from __future__ import annotations

import functools

from studio.data.chat_mask import FIELD, MaskError
from studio.data.errors import DataError
from studio.data.mix import map_procs
from studio.methods import common
from studio.methods.context import TrainContext
from studio.methods.sft_tokens import drop_untrained, tokenise_chats, trained_tokens


def train(ctx: TrainContext) -> None:
    from trl import SFTConfig, SFTTrainer

    tokenizer = common.load_tokenizer(ctx)
    spec = ctx.spec
    # prompt-style adapters prepend virtual tokens; peft pads the labels for them with -100,
    # so the assistant mask still lines up
    assistant_only = spec.data.assistant_only_loss
    how = loss_mask(tokenizer, spec) if assistant_only else None
    block = spec.model.max_seq_len
    tokenise = functools.partial(tokenise_chats, tokenizer=tokenizer, max_length=block,
                                 assistant_only=assistant_only, keep_untrained=True, how=how)
    try:
        data = common.load_data(ctx, ("conversation",), prepare=tokenise)
        train_ds = drop_untrained(data.train)
        # tokenised after load_data cut it to eval_steps batches, not before
        eval_ds = tokenise_chats(data.eval, tokenizer, block, assistant_only, how=how) if data.eval is not None else None
    except MaskError as exc:  # a row the template renders unlike the probe: refused, not trained whole
        raise DataError(FIELD, f"{exc}. Fix or remove that row, or set {FIELD}: false to train on every token") from exc
    _say_dropped(data.train, train_ds, block)
    _say_trained(train_ds, how)
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


def loss_mask(tokenizer, spec) -> str:
    """How the assistant's tokens are found for this tokenizer (studio.data.chat_mask),
    said in train.log; a template where they cannot be found stops the run before any data
    is read, rather than training on the whole conversation unannounced."""
    from studio.data import chat_mask

    method = chat_mask.mask_method(tokenizer)
    if method.how == chat_mask.NONE:
        name = spec.model.name_or_path if spec.model.source == "pretrained" else spec.model.tokenizer
        raise DataError(chat_mask.FIELD, chat_mask.refusal(name or "the tokenizer", method))
    print(f"Loss mask: assistant tokens only ({chat_mask.FIELD}), found by {method.describe()}", flush=True)
    return method.how


def _say_trained(train_ds, how: str | None) -> None:
    counts = trained_tokens(train_ds)
    what = "assistant tokens" if how else "every token (data.assistant_only_loss is off)"
    if counts is None:
        print(f"Loss mask: {what}; a stream, so the trained tokens are not counted ahead", flush=True)
        return
    trained, total = counts
    share = f" ({100 * trained / total:.1f}%)" if total else ""
    print(f"Loss mask: {trained} of {total} training tokens trained{share}: {what}, "
          f"mask by {how or 'none'}", flush=True)
