"""The export parity check: the same prompts, greedy, through the transformers model and
through the GGUF in llama.cpp's runtime. Reports how many greedy tokens agree, the first
token that differs, and whether llama.cpp formats (chat template from the file) and
tokenises the prompts exactly as the studio does: the usual causes of a GGUF that
"answers gibberish" show up here as numbers instead of as a surprise later."""
from __future__ import annotations

import json
from pathlib import Path

from studio.ship.engine import GGUFBackend

HELD_OUT = Path(__file__).resolve().parents[2] / "assets" / "data" / "arith_sft_test.jsonl"
END = -1  # the end of a reply (any stop token), compared like a token


def held_out_prompts(n: int = 20) -> list[str]:
    """User turns of the shipped held-out chat set (never trained on by the recipes)."""
    prompts = []
    for line in HELD_OUT.read_text().splitlines():
        msgs = json.loads(line)["messages"]
        prompts.append(next(m["content"] for m in msgs if m["role"] == "user"))
        if len(prompts) == n:
            break
    return prompts


def _hf_greedy(loaded, ids: list[int], max_new_tokens: int) -> list[int]:
    import torch

    tok = loaded.tokenizer
    with torch.inference_mode():
        out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                    eos_token_id=loaded.stop_ids,
                                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    new = out[0, len(ids):].tolist()
    stops = set(loaded.stop_ids)
    cut = next((i for i, t in enumerate(new) if t in stops), None)
    return new if cut is None else new[:cut] + [END]


def _gguf_greedy(backend: GGUFBackend, ids: list[int], max_new_tokens: int) -> list[int]:
    out = backend.greedy(ids, max_new_tokens)
    return out if len(out) >= max_new_tokens else out + [END]


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def parity(model_dir: str | Path, gguf_file: str | Path, prompts: list[str] | None = None,
           max_new_tokens: int = 32, backend: GGUFBackend | None = None) -> dict:
    """Both models continue the studio's own prompt ids, so a tokeniser difference cannot
    hide a weight difference (and is reported on its own). Agreement counts the tokens
    before the first difference (after it the two continue different texts) over the
    longer reply of each prompt."""
    from studio.inference import GenerationSettings, build_prompt, load

    loaded = load(str(model_dir), device="cpu")
    tok = loaded.tokenizer
    backend = backend or GGUFBackend(gguf_file)
    prompts = prompts or held_out_prompts()
    agree = total = same_text = same_ids = 0
    first = None
    for i, prompt in enumerate(prompts):
        msgs = [{"role": "user", "content": prompt}]
        text = build_prompt(tok, msgs, GenerationSettings())
        ids = tok(text, add_special_tokens=False)["input_ids"]
        same_text += backend.chat_prompt(msgs) == text
        same_ids += backend.tokenize(text) == ids
        hf, gg = _hf_greedy(loaded, ids, max_new_tokens), _gguf_greedy(backend, ids, max_new_tokens)
        k = _common(hf, gg)
        agree, total = agree + k, total + max(len(hf), len(gg))
        if first is None and k < max(len(hf), len(gg)):
            name = lambda seq: "<end>" if k >= len(seq) or seq[k] == END else tok.decode([seq[k]])  # noqa: E731
            first = {"prompt": i, "text": prompt, "position": k, "hf": name(hf), "gguf": name(gg)}
    return {"prompts": len(prompts), "tokens": total, "agreement": agree / max(total, 1), "first_difference": first,
            "template_matches": same_text / len(prompts), "tokenizer_matches": same_ids / len(prompts),
            "eos_matches": backend.llama.token_eos() in loaded.stop_ids}
