"""The sequence length a run really trains on, from its data: the blend's token lengths
(the same count the Data tab's histogram draws, studio.data.preview.token_lengths) at a
high quantile, capped by the truncation at model.max_seq_len. The estimate and the
advisor plan with it instead of the model's whole context (a 20-token chat does not pay
for 8,192 tokens of activations)."""
from __future__ import annotations

LENGTH_ROWS = 5000  # rows of the blend tokenised: the quantile settles long before
QUANTILE = 0.95  # batches pad to their longest row: p95 covers all but the rare long batch


def quantile_length(lengths: list[int], limit: int | None, q: float = QUANTILE) -> int:
    """The q-quantile of the lengths after truncation at `limit` (at least 1 token)."""
    if not lengths:
        raise ValueError("data: no rows to measure")
    cut = sorted(min(n, limit) if limit else n for n in lengths)
    return max(1, cut[min(len(cut) - 1, int(q * len(cut)))])


def data_seq_len(spec, tokenizer=None, q: float = QUANTILE) -> tuple[int, int | None, str]:
    """(tokens per row, rows in the blend, where the length came from) for the spec's data.
    tokenizer: a loaded one, a folder, or None for the spec's own."""
    from studio.data.mix import mix
    from studio.data.preview import _load_tokenizer, quiet_progress, token_lengths
    from studio.methods import REGISTRY

    tok = _load_tokenizer(tokenizer if tokenizer is not None else _spec_tokenizer(spec))
    with quiet_progress():
        bundle = mix(spec, REGISTRY[spec.method.name].data_kinds)
        train = bundle.train
        rows = len(train) if hasattr(train, "__len__") else None
        sample = train.select(range(min(LENGTH_ROWS, rows))) if rows is not None else _head(train)
        lengths = token_lengths(sample, bundle.kind, tok)
    limit = spec.model.max_seq_len
    seq = quantile_length(lengths, limit, q)
    cut = sum(n > limit for n in lengths) if limit else 0
    source = (f"p{round(q * 100)} of {len(lengths)} rows' token lengths"
              + (f", {cut} truncated at max_seq_len {limit}" if cut else ""))
    return seq, rows, source


def _spec_tokenizer(spec):
    from studio.model import load_tokenizer

    return load_tokenizer(spec.model)


def _head(stream):
    import datasets

    return datasets.Dataset.from_list(list(stream.take(LENGTH_ROWS)))
