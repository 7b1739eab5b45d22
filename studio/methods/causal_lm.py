"""Pretraining from scratch and continued pretraining (CPT): next-token prediction on
raw text packed into max_seq_len blocks (no padding, so no compute goes to pad tokens).

Plain transformers Trainer: trl adds nothing for raw-text causal LM, and skipping its
import saves ~10 s of start-up."""
from __future__ import annotations

from studio.methods import common
from studio.methods.context import TrainContext


def pack(dataset, tokenizer, block: int):
    """Tokenise, append eos to each document, concatenate, cut into equal blocks."""
    eos = tokenizer.eos_token_id

    def tokenise(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"ids": [x + [eos] for x in ids]}

    def group(batch):
        flat = [t for ids in batch["ids"] for t in ids]
        usable = (len(flat) // block) * block
        blocks = [flat[i : i + block] for i in range(0, usable, block)]
        # an explicit all-ones mask lets the Trainer count real tokens (num_tokens)
        return {"input_ids": blocks, "labels": [list(b) for b in blocks],
                "attention_mask": [[1] * block for _ in blocks]}

    tokenised = dataset.map(tokenise, batched=True, remove_columns=dataset.column_names)
    return tokenised.map(group, batched=True, batch_size=1000, remove_columns=["ids"])


def train(ctx: TrainContext) -> None:
    from transformers import Trainer, TrainingArguments, default_data_collator

    tokenizer = common.load_tokenizer(ctx)
    data = common.load_data(ctx, ("text",))
    model = common.load_model(ctx, tokenizer)
    block = min(ctx.spec.model.max_seq_len, getattr(model.config, "max_position_embeddings", 10**9))
    train_ds = pack(data.train, tokenizer, block)
    eval_ds = pack(data.eval, tokenizer, block) if data.eval is not None and len(data.eval) else None
    if len(train_ds) == 0:
        raise ValueError(f"data: the text is shorter than one block of model.max_seq_len={block} tokens")
    args = common.make_config(TrainingArguments, ctx, eval_ds)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=default_data_collator, callbacks=ctx.callbacks,
                      **common.optimizer_kwargs(ctx))
    common.train_and_save(ctx, trainer, tokenizer)
