"""SFT's conversations -> the token ids and labels it trains on, in one batched map (in
several processes for a large set), before trl sees them.

trl's SFTTrainer prepares a dataset a row at a time in one process: tokenise, build the
labels, truncate, drop rows left without a trained token (four per-row passes). On the
100k-row bench (bench/data_pipeline.py) that took 45 s against 12 s for this path
(normalising and blending included) on 2 processes. Given a dataset that already has
input_ids and labels, trl skips its tokenising and labelling; with no max_length it skips
its truncation too (done here), and it still packs when asked. Tests hold the rows equal
to trl's own preparation."""
from __future__ import annotations


def tokenise_chats(dataset, tokenizer, max_length: int, assistant_only: bool, keep_untrained: bool = False,
                   how: str | None = None):
    """`messages` rows -> `input_ids` and `labels` (-100 where no loss is taken: outside the
    assistant's turns when `assistant_only`), cut to `max_length` from the start; rows left
    with no trained token are dropped, as trl drops them, unless `keep_untrained` (one row
    out for each row in, as the data layer's `prepare` must give; drop_untrained later).
    `how` the assistant mask is found (studio.data.chat_mask: generation marks, the path trl
    takes, or prefix rendering for a template without marks); decided from the template when
    None, and a template where neither works is refused (MaskError), never trained whole."""
    from studio.data import chat_mask

    if assistant_only and how is None:
        method = chat_mask.mask_method(tokenizer)
        if method.how == chat_mask.NONE:
            raise chat_mask.MaskError(chat_mask.refusal("this tokenizer", method))
        how = method.how

    def encode(batch):
        if assistant_only:
            all_ids, masks = chat_mask.encode(tokenizer, batch["messages"], how)
        else:
            all_ids, masks = tokenizer.apply_chat_template(batch["messages"], tokenize=True,
                                                           return_dict=True)["input_ids"], None
        rows = {"input_ids": [], "labels": []}
        for i, ids in enumerate(all_ids):
            ids = ids[:max_length]
            labels = [t if m else -100 for t, m in zip(ids, masks[i])] if assistant_only else ids
            if keep_untrained or _trained(labels):
                rows["input_ids"].append(ids)
                rows["labels"].append(labels)
        return rows

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names,
                       **_map_kwargs(dataset, "Tokenising conversations"))


def trained_tokens(dataset) -> tuple[int, int] | None:
    """(tokens with a label, all tokens) of a tokenised dataset, read from its Arrow column;
    None for a stream (its rows are not all there to count)."""
    import datasets
    import pyarrow.compute as pc

    if not isinstance(dataset, datasets.Dataset):
        return None
    if len(dataset) == 0:
        return 0, 0
    flat = pc.list_flatten(dataset.with_format("arrow")[:]["labels"])  # a slice without an indices mapping
    return int(pc.sum(pc.not_equal(flat, -100)).as_py() or 0), len(flat)


def drop_untrained(dataset):
    """The rows with at least one trained token."""
    import datasets

    if isinstance(dataset, datasets.Dataset) and not _any_untrained(dataset.data.column("labels")):
        return dataset  # the usual case, told from the Arrow column in milliseconds; the filter reads every row
    return dataset.filter(lambda batch: [_trained(labels) for labels in batch["labels"]], batched=True,
                          **_map_kwargs(dataset, "Leaving out rows with no trained token"))


def _trained(labels) -> bool:
    return any(t != -100 for t in labels)


def _any_untrained(column) -> bool:
    """Whether any row of an Arrow list column (all the rows under an indices mapping,
    so a superset of the dataset's) holds no label other than -100."""
    import numpy as np
    import pyarrow.compute as pc

    for chunk in column.chunks:
        trained = pc.not_equal(chunk.flatten(), -100).to_numpy(zero_copy_only=False)
        rows = pc.list_parent_indices(chunk).to_numpy()
        if (np.bincount(rows[trained], minlength=len(chunk)) == 0).any():
            return True
    return False


def _map_kwargs(dataset, desc: str) -> dict:
    import datasets

    from studio.data.mix import map_procs

    # a stream maps lazily, where neither processes nor a progress description apply
    return {"num_proc": map_procs(dataset), "desc": desc} if isinstance(dataset, datasets.Dataset) else {}
