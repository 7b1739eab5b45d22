"""What the Data tab shows: one source inspected, and the blend previewed (sampled rows
with their source, achieved vs requested proportions, token counts, truncation)."""
from __future__ import annotations

import contextlib
import os
import random
from collections import Counter

from studio.data.errors import DataError
from studio.data.formats import FORMATS, detect_format
from studio.data.mix import SOURCE_COLUMN, SourceReport, _format_of, _normalized, map_procs, mix
from studio.data.preflight import no_rows_message
from studio.data.sources import Raw, read_source
from studio.spec import DataSource, RunSpec

PROPORTION_ROWS = 10_000  # rows of a streamed blend counted for the achieved proportions
TOKEN_ROWS = 20_000  # rows per source tokenised for the length statistics
INSPECT_STREAM = 1000  # rows of a streamed source that `inspect` looks at


def inspect_source(source: DataSource, index: int = 0) -> dict:
    """One source on its own: detected format, rows, columns, bad rows, an example.
    A streamed source is judged by its first INSPECT_STREAM rows."""
    raw = read_source(source, index)
    streamed = raw.streamed
    if streamed:
        raw = Raw(raw.label, rows=list(raw.dataset.take(INSPECT_STREAM)), test=raw.test)
    guess = detect_format(raw.sample(200))
    out = {"path": source.path, "detected": guess.name, "guess": guess.to_dict(), "columns": guess.columns,
           "rows": raw.count, "streamed": streamed, "note": guess.note,
           "test_file": raw.test.label if raw.test is not None else None}
    if guess.name == "unknown" and source.format in ("auto", "", None) and not raw.fixed_format:
        reasons = dict(Counter(reason for _, reason in raw.bad).most_common())
        if raw.rows is not None and not raw.rows:  # every line bad, or only blank lines: say which
            out["note"] = no_rows_message(raw)
        out.update(format="unknown", kind=None, title="unknown format", ok=0, bad=len(raw.bad),
                   reasons=reasons, examples=[{"line": n, "reason": r} for n, r in raw.bad[:5]], example=None)
        return out
    fmt, detected = _format_of(source, raw, index)
    kind = FORMATS[fmt].kind
    rep = SourceReport(index, source.path, fmt, detected, kind)
    good = _normalized(raw, fmt, kind, rep, index)
    example = None
    if len(good):
        example = {k: v for k, v in good[0].items() if v is not None and k != SOURCE_COLUMN}
    info = rep.to_dict()
    out.update(format=fmt, detected=detected or guess.name, kind=kind, title=FORMATS[fmt].title, ok=len(good),
               bad=rep.bad, reasons=info["reasons"], examples=info["examples"], example=example)
    return out


# -- token counts ---------------------------------------------------------------------


def _load_tokenizer(tokenizer):
    if tokenizer is None or not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=False)


def chat_template_of(tokenizer) -> str:
    """The tokenizer's own template when it has one, ChatML otherwise."""
    from studio.tokenizer import CHATML_TEMPLATE

    return getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE


def _renderer(kind: str, tokenizer):
    """rows -> the texts the trainer will see (chat template applied)."""
    if tokenizer is None:
        template = None
    else:
        template = chat_template_of(tokenizer)

    def chat(conversations, generation_prompt=False):
        if template is None:
            return ["\n".join(f"{m['role']}: {m['content']}" for m in c) for c in conversations]
        return tokenizer.apply_chat_template(conversations, tokenize=False, chat_template=template,
                                             add_generation_prompt=generation_prompt)

    def render(batch) -> list[str]:
        if kind == "text":
            return batch["text"]
        if kind == "conversation":
            return chat(batch["messages"])
        if kind == "preference":  # the longer of the two answers is what gets truncated
            a = chat([p + c for p, c in zip(batch["prompt"], batch["chosen"])])
            b = chat([p + r for p, r in zip(batch["prompt"], batch["rejected"])])
            return [x if len(x) >= len(y) else y for x, y in zip(a, b)]
        if kind == "unpaired":
            return chat([p + c for p, c in zip(batch["prompt"], batch["completion"])])
        return chat(batch["prompt"], generation_prompt=True)

    return render


def token_lengths(ds, kind: str, tokenizer=None) -> list[int]:
    """Length of each row as the trainer sees it: tokens with a tokenizer, else characters.
    A batched datasets map (several processes for large sets), like the trainers' own."""
    render = _renderer(kind, tokenizer)

    def lengths(batch):
        texts = render(batch)
        if tokenizer is None:
            return {"n": [len(t) for t in texts]}
        return {"n": [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]}

    out = ds.map(lengths, batched=True, batch_size=1000, remove_columns=ds.column_names,
                 num_proc=map_procs(ds), load_from_cache_file=False, keep_in_memory=True)
    return out["n"]


def _stats(values: list[int], limit: int) -> dict:
    if not values:
        return {"rows": 0, "mean": 0, "p50": 0, "p90": 0, "max": 0, "over_max": 0}
    s = sorted(values)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"rows": len(s), "mean": round(sum(s) / len(s), 1), "p50": pick(0.5), "p90": pick(0.9),
            "max": s[-1], "over_max": sum(v > limit for v in s)}


# -- the blend ---------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_progress():
    """No progress bars for the quick maps of a preview (they would flood the log)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            enable_progress_bars()


def preview(spec: RunSpec, n: int = 20, tokenizer=None) -> dict:
    """The blend as the method will see it. `tokenizer`: an object, a folder, or None
    (lengths then count characters)."""
    with quiet_progress():
        return _preview(spec, n, tokenizer)


def _preview(spec: RunSpec, n: int, tokenizer) -> dict:
    import datasets

    from studio.methods import REGISTRY

    if spec.method.name not in REGISTRY:
        raise DataError("method.name", f"'{spec.method.name}' is not a method; choose one of {', '.join(REGISTRY)}")
    bundle = mix(spec, REGISTRY[spec.method.name].data_kinds, keep_source=True)
    tok = _load_tokenizer(tokenizer)
    train = bundle.train
    streamed = not isinstance(train, datasets.Dataset)
    if streamed:
        head = list(train.take(PROPORTION_ROWS))
        train = datasets.Dataset.from_list(head) if head else None
    counted = train[SOURCE_COLUMN] if train is not None else []
    counts = Counter(counted)
    total_w = sum(s.weight for s in spec.data.sources)
    rng = random.Random(spec.data.seed)
    picks = sorted(rng.sample(range(len(counted)), min(n, len(counted))))
    sample = []
    for i in picks:
        row = dict(train[i])
        src = row.pop(SOURCE_COLUMN)
        sample.append({"source": src, "path": spec.data.sources[src].path, "row": row})

    limit = spec.model.max_seq_len
    sources = []
    for rep in bundle.report:
        i = rep.index
        entry = rep.to_dict()
        entry["requested"] = spec.data.sources[i].weight / total_w
        entry["achieved"] = counts.get(i, 0) / len(counted) if counted else 0.0
        entry["rows_in_mix"] = counts.get(i, 0)
        entry["lengths"] = _stats(token_lengths(_own_rows(bundle.parts[i]), bundle.kind, tok), limit)
        sources.append(entry)
    over = sum(s["lengths"]["over_max"] for s in sources)
    measured = sum(s["lengths"]["rows"] for s in sources)
    return {
        "method": spec.method.name, "kind": bundle.kind, "mixing": spec.data.mixing,
        "stopping_strategy": spec.data.stopping_strategy,
        "total_rows": None if streamed else len(bundle.train), "counted_rows": len(counted),
        "eval_rows": len(bundle.eval) if bundle.eval is not None else 0,
        "unit": "tokens" if tok is not None else "characters",
        "template": None if tok is None else ("tokenizer" if getattr(tok, "chat_template", None) else "chatml"),
        "max_seq_len": limit, "truncated": over, "truncated_fraction": over / measured if measured else 0.0,
        "sources": sources, "rows": sample,
        "loss_mask": loss_mask(spec, bundle.kind, train, tok),
        "proportions": {"requested": [s["requested"] for s in sources], "achieved": [s["achieved"] for s in sources]},
    }


LOSS_METHODS = ("sft", "distill")  # the methods that read data.assistant_only_loss
MASK_ROWS = 1000  # rows of the blend tokenised to count the trained tokens


def loss_mask(spec: RunSpec, kind: str, train, tok) -> dict | None:
    """How the loss mask of a conversation blend is found (generation marks / prefix
    rendering / none, studio.data.chat_mask) and how many of the tokens of up to MASK_ROWS
    rows it trains, as SFT will report it in train.log. None where no mask applies."""
    from studio.data import chat_mask

    if kind != "conversation" or tok is None or spec.method.name not in LOSS_METHODS or train is None:
        return None
    rows = [train[i]["messages"] for i in range(min(MASK_ROWS, len(train)))]
    if not spec.data.assistant_only_loss:
        method = chat_mask.MaskMethod(chat_mask.NONE, "data.assistant_only_loss is off: every token trains")
    else:
        method = chat_mask.mask_method(tok)
    out = {"how": method.how, "reason": method.reason, "rows": len(rows), "trained": 0, "tokens": 0}
    if method.how == chat_mask.NONE and spec.data.assistant_only_loss:
        out["note"] = f"⚠️ Loss mask: none: {chat_mask.refusal('this tokenizer', method)}"
        return out
    try:
        ids, masks = chat_mask.encode(tok, rows, method.how)
    except chat_mask.MaskError as exc:
        out["note"] = f"⚠️ Loss mask: {exc}"
        return out
    limit = spec.model.max_seq_len  # trained as the trainer cuts them
    out["trained"] = sum(sum(m[:limit]) for m in masks)
    out["tokens"] = sum(len(i[:limit]) for i in ids)
    share = f"{100 * out['trained'] / out['tokens']:.1f}%" if out["tokens"] else "0%"
    out["note"] = (f"Loss mask: **{method.describe()}**; {out['trained']} of {out['tokens']} tokens "
                   f"({share}) trained in the first {len(rows)} rows")
    return out


def _own_rows(part):
    """Up to TOKEN_ROWS of one source's own rows (before mixing, so repeats from
    oversampling do not skew its statistics)."""
    import datasets

    if not isinstance(part, datasets.Dataset):
        part = datasets.Dataset.from_list(list(part.take(TOKEN_ROWS)), features=part.features)
    elif len(part) > TOKEN_ROWS:
        part = part.shuffle(seed=0, keep_in_memory=True).select(range(TOKEN_ROWS))
    return part.remove_columns([c for c in part.column_names if c == SOURCE_COLUMN])
