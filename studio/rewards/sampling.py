"""Sampled completions for the reward playground: N replies of a run's model to each of K
prompts of a data file, with the file's references, ready to score (studio.rewards.tryout).

What a reward does with the model's own replies is what GRPO will see, so trying it on
them (rather than on hand-written ones) shows before a run whether the groups will differ
at all (a reward that gives every sample the same score teaches nothing).
torch/transformers are imported only when a model is loaded (the UI imports this lazily
too, on the button's click).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

MAX_PROMPTS, MAX_SAMPLES = 64, 16
_cache_lock = threading.Lock()
_cache = None  # one studio.inference.ModelCache, made on first use: a second click reuses the model


@dataclass
class Sampled:
    model: str  # the folder the replies came from
    prompts: list = field(default_factory=list)  # per completion: its prompt (a list of messages)
    references: list = field(default_factory=list)  # per completion: the row's answer, or None
    completions: list[str] = field(default_factory=list)

    def prompt_text(self, i: int) -> str:
        """The last user turn of completion i's prompt, for a table."""
        turns = [m["content"] for m in self.prompts[i] if m.get("role") == "user"]
        return turns[-1] if turns else ""


def prompt_rows(data: str, k: int, field_name: str = "data") -> list[dict]:
    """The first k rows of a data file as {"prompt": messages, "answer": text or None}:
    prompt rows as they are, conversations up to their last assistant turn (which becomes
    the reference, as GRPO's data loading does). ValueError names the field."""
    from studio.data.errors import DataError
    from studio.data.formats import FORMATS, row_format
    from studio.data.normalize import convert, normalize
    from studio.data.sources import read_file, resolve_path

    try:
        raw = read_file(resolve_path(data, field_name), limit=max(k * 4, 50))
    except DataError as exc:
        raise ValueError(f"{field_name}: {exc.message}") from None
    except OSError as exc:
        raise ValueError(f"{field_name}: cannot read '{data}': {exc.strerror or exc}") from None
    rows, reasons = [], []
    for row in raw.rows or []:
        fmt = row_format(row)
        done, why = normalize(row, fmt) if fmt else (None, "no known format")
        if done is not None and FORMATS[fmt].kind != "prompt":
            converted, why = convert(done, FORMATS[fmt].kind, "prompt")
            done = converted[0] if converted else None
        if done is None:
            reasons.append(why)
            continue
        rows.append({"prompt": done["prompt"], "answer": done.get("answer")})
        if len(rows) == k:
            break
    if not rows:
        raise ValueError(f"{field_name}: '{data}' has no row with a prompt"
                         + (f" ({reasons[0]})" if reasons else "") + "; give prompt rows or conversations")
    return rows


def model_folder(run: str, runs_dir=None) -> str:
    """The model a `run` field names: a run id, a run's name (its newest finished run),
    run:<name or id>, a run directory or a model folder. ValueError names the field."""
    from pathlib import Path

    from studio import inference, runref
    from studio.rundirs import JobError

    text = (run or "").strip()
    if not text:
        raise ValueError("run: name the run whose model samples the completions (a run id or a recipe name, "
                         "e.g. extract-json-sft)")
    if not text.startswith(runref.PREFIX) and Path(text).expanduser().is_dir():
        return inference.resolve_source(str(Path(text).expanduser()), runs_dir)
    try:
        return str(runref.find_run(text, runs_dir, field="run"))
    except JobError as exc:
        raise ValueError(str(exc)) from None


def _loaded(folder: str, device: str | None):
    global _cache
    from studio import inference

    with _cache_lock:
        if _cache is None:
            _cache = inference.ModelCache(capacity=1)
    if device is None:  # a GPU a training run holds is left to it: sample on the CPU then
        device = inference.default_device()
        if inference.device_conflict(device):
            device = "cpu"
    return _cache.get(folder, device)


def _check_counts(k: int, n: int) -> None:
    if not 1 <= int(k) <= MAX_PROMPTS:
        raise ValueError(f"prompts: sample on 1 to {MAX_PROMPTS} prompts (got {k})")
    if not 1 <= int(n) <= MAX_SAMPLES:
        raise ValueError(f"samples: draw 1 to {MAX_SAMPLES} completions per prompt (got {n})")


def sample(run: str, data: str, k: int = 4, n: int = 4, runs_dir=None, temperature: float = 0.7,
           max_new_tokens: int = 64, seed: int = 0, device: str | None = None) -> Sampled:
    """n completions of the run's model for each of the first k prompts of `data`, drawn
    as GRPO draws a group (sampling at `temperature`; 0 is greedy, so all n agree).
    Every input is checked before the model loads."""
    _check_counts(k, n)
    if temperature < 0 or not 1 <= int(max_new_tokens) <= 4096:
        raise ValueError("temperature: 0 or more; max_new_tokens: 1 to 4096")
    rows = prompt_rows(data, int(k))
    folder = model_folder(run, runs_dir)
    loaded = _loaded(folder, device)
    out = Sampled(model=folder)
    for row in rows:
        for text in _generate(loaded, row["prompt"], int(n), temperature, int(max_new_tokens), seed):
            out.prompts.append(row["prompt"])
            out.references.append(row["answer"])
            out.completions.append(text)
    return out


def _generate(loaded, messages: list[dict], n: int, temperature: float, max_new_tokens: int, seed: int):
    """n replies to one prompt in one generate call (the group shares the prompt)."""
    import torch

    from studio.inference import GenerationSettings, build_prompt

    tok = loaded.tokenizer
    text = build_prompt(tok, messages, GenerationSettings())
    inputs = tok(text, return_tensors="pt", add_special_tokens=False).to(loaded.device)
    sample = temperature > 0
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sample, num_return_sequences=n if sample else 1,
                  eos_token_id=loaded.stop_ids,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    if sample:
        kwargs.update(temperature=temperature, top_k=None, top_p=1.0)  # trl's GRPO defaults
    with loaded.lock, torch.inference_mode():
        torch.manual_seed(seed)
        out = loaded.model.generate(**inputs, **kwargs)
    replies = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [r.strip() for r in replies] * (1 if sample else n)


def sample_and_score(reward, run: str, data: str, k: int = 4, n: int = 4, runs_dir=None, **settings):
    """(Sampled, Scores): the reward is checked first (cheap), then the model samples."""
    from studio.rewards.registry import build
    from studio.rewards.tryout import score_completions

    build(reward)  # a wrong reward is refused before a model loads
    got = sample(run, data, k, n, runs_dir, **settings)
    references = got.references if any(r is not None for r in got.references) else None
    if references is not None:
        references = ["" if r is None else r for r in references]
    scores = score_completions(reward, got.completions, references, list(got.prompts))
    return got, scores
