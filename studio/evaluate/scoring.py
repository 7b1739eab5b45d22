"""What a model does on a batch of examples: token log-likelihoods and greedy replies.
Imported only by the evaluation process (torch).

A batch that fails is retried one example at a time, so one bad example is counted as
failed with its error and the rest are scored."""
from __future__ import annotations

import torch


def _device(model):
    return next(model.parameters()).device


def render(tokenizer, prompt, chat: bool = True) -> str:
    """The text a model sees before its reply: its own chat template (so a broken template
    in an export shows up as different replies), or the raw prompt."""
    if not chat:
        return prompt if isinstance(prompt, str) else "\n".join(m.get("content", "") for m in prompt)
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def per_example(fn, batch: list, *args) -> list[dict]:
    """fn(batch, *args) -> one dict per example; on failure, each example alone, and an
    example that still fails gets {"error": ...} instead of stopping the evaluation."""
    try:
        return fn(batch, *args)
    except Exception as exc:  # noqa: BLE001 - any failure of one batch is retried per example
        if len(batch) == 1:
            return [{"error": f"{type(exc).__name__}: {exc}"}]
    out = []
    for item in batch:
        out += per_example(fn, [item], *args)
    return out


# -- held-out loss -----------------------------------------------------------------------


def encode_for_loss(tokenizer, examples: list[dict], max_length: int | None, assistant_only: bool):
    """(input_ids, labels) per example, as studio.methods.sft_tokens tokenises for training."""
    from studio.data import chat_mask

    out = []
    chats = [e["messages"] for e in examples if "messages" in e]
    if chats:
        how = chat_mask.mask_method(tokenizer).how if assistant_only else chat_mask.NONE
        if assistant_only and how == chat_mask.NONE:
            raise ValueError(chat_mask.refusal("this tokenizer", chat_mask.mask_method(tokenizer)))
        ids, masks = chat_mask.encode(tokenizer, chats, how)
        chat_rows = iter(zip(ids, masks))
    for e in examples:
        if "messages" in e:
            row_ids, mask = next(chat_rows)
        else:
            row_ids = tokenizer(e["text"])["input_ids"]
            mask = [1] * len(row_ids)
        row_ids, mask = row_ids[:max_length or None], mask[:max_length or None]
        out.append((row_ids, [t if m else -100 for t, m in zip(row_ids, mask)]))
    return out


def loss_batch(batch: list[tuple[list[int], list[int]]], model, pad_id: int) -> list[dict]:
    """Summed NLL of each example's labelled tokens (shifted as the model's own loss
    shifts them) and how many there are: right padding, fp32 log-softmax."""
    width = max(len(ids) for ids, _ in batch)
    dev = _device(model)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (row, lab) in enumerate(batch):
        ids[i, :len(row)], labels[i, :len(lab)], attn[i, :len(row)] = torch.tensor(row), torch.tensor(lab), 1
    with torch.no_grad():
        logits = model(input_ids=ids.to(dev), attention_mask=attn.to(dev)).logits.float()
    target = labels[:, 1:].to(dev)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    keep = target != -100
    nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * keep
    return [{"nll": float(nll[i].sum()), "tokens": int(keep[i].sum())} for i in range(len(batch))]


# -- log-likelihood of continuations (multiple choice, preference pairs) -----------------


def continuation_logprobs(pairs: list[tuple[str, str]], model, tokenizer) -> list[float]:
    """log P(continuation | context) for each (context, continuation), summed over the
    continuation's tokens."""
    rows = []
    for context, cont in pairs:
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
        if not ctx:  # nothing to condition on: start from BOS (or EOS) as lm-eval does
            ctx = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        cont_ids = tokenizer(cont, add_special_tokens=False)["input_ids"]
        rows.append((ctx + cont_ids, [-100] * len(ctx) + cont_ids))
    scores = loss_batch(rows, model, tokenizer.pad_token_id)
    return [-s["nll"] for s in scores]


def choice_batch(batch: list[dict], model, tokenizer, chat: bool) -> list[dict]:
    pairs = [(render(tokenizer, e["prompt"], chat), (" " if not chat else "") + c) for e in batch for c in e["choices"]]
    logps = iter(continuation_logprobs(pairs, model, tokenizer))
    out = []
    for e in batch:
        lp = [next(logps) for _ in e["choices"]]
        norm = [v / max(1, len(c.encode())) for v, c in zip(lp, e["choices"])]  # lm-eval's acc_norm: per byte
        pick, pick_norm = max(range(len(lp)), key=lp.__getitem__), max(range(len(lp)), key=norm.__getitem__)
        out.append({"output": e["choices"][pick], "logprobs": lp,
                    "scores": {"acc": float(pick == e["label"]), "acc_norm": float(pick_norm == e["label"])}})
    return out


def pairwise_batch(batch: list[dict], model, tokenizer, chat: bool) -> list[dict]:
    pairs = []
    for e in batch:
        context = render(tokenizer, e["prompt"], chat)
        pairs += [(context, e["chosen"]), (context, e["rejected"])]
    lp = continuation_logprobs(pairs, model, tokenizer)
    return [{"output": f"chosen {lp[2 * i]:.3f} vs rejected {lp[2 * i + 1]:.3f}",
             "scores": {"pairwise_acc": float(lp[2 * i] > lp[2 * i + 1])}} for i in range(len(batch))]


# -- greedy generation -------------------------------------------------------------------


def generate_batch(batch: list[dict], model, tokenizer, max_new_tokens: int, chat: bool) -> list[dict]:
    """Greedy replies (text and token ids), left padding, stopping at the template's end tokens."""
    from studio.inference import stop_token_ids

    prompts = [render(tokenizer, e["prompt"], chat) for e in batch]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    enc = {k: v.to(_device(model)) for k, v in enc.items()}
    stops = stop_token_ids(tokenizer)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                             pad_token_id=tokenizer.pad_token_id)
    rows = []
    for seq in out[:, enc["input_ids"].shape[1]:].tolist():
        ids = []
        for t in seq:  # up to and without the first stop token
            if t in stops:
                break
            ids.append(t)
        rows.append({"output": tokenizer.decode(ids, skip_special_tokens=True), "token_ids": ids,
                     "token_text": [tokenizer.decode([t]) for t in ids]})
    return rows
