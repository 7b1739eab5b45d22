"""Train the studio's small byte-level BPE tokenizer and give it a ChatML template.

Byte-level so no text is ever out of vocabulary; digits are split one per token so a
tiny model sees "12" as "1" "2" and can learn carrying instead of memorising a token
per number. `tokenizers` and `transformers` load inside the functions: the UI imports
this module only for CHATML_TEMPLATE.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, PAD)

# ChatML. Assistant turns (content, tool calls and the closing <|im_end|>, so the model
# learns to stop) sit inside {% generation %}: trl's assistant_only_loss and
# return_assistant_tokens_mask read those markers. Tools, when given, go in a system
# turn of their own; a "tool" role carries function results back. Tool-call arguments
# may be a dict or an already-serialised JSON string (as in Glaive data). The newline
# after <|im_end|> only separates turns: a conversation ends on <|im_end|>, so a scored
# completion (DPO, KTO, SimPO, a reward model's last token) ends where generation stops,
# not on a token the model never produces (it cost ~9.6 nats a completion, which KTO and
# SimPO, unlike DPO's pairwise difference, do not cancel).
CHATML_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n# Tools\\nYou may call these functions:\\n' }}"
    "{%- for tool in tools %}{{- (tool | tojson) + '\\n' }}{%- endfor %}"
    "{{- 'Call one as <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{%- if message['content'] %}{{- message['content'] }}{%- endif %}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{%- set fn = call['function'] if call['function'] is defined else call %}"
    "{%- set args = fn['arguments'] if fn['arguments'] is string else (fn['arguments'] | tojson) %}"
    "{{- '<tool_call>{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' + args + '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>' }}"
    "{%- endif %}"
    "{%- if not loop.last or add_generation_prompt %}{{- '\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None,
                    special_tokens: Iterable[str] | None = None):
    """Train a byte-level BPE on `texts`, save it to `out_dir` (if given) and return it.

    Returns a transformers PreTrainedTokenizerFast with eos "<|im_end|>", pad "<|pad|>",
    no bos, and the ChatML template above.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS)
    for token in special_tokens or ():
        if token not in specials:
            specials.append(token)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(specials) + len(alphabet):
        raise ValueError(
            f"vocab_size must be at least {len(specials) + len(alphabet)} "
            f"(256 bytes + {len(specials)} special tokens), got {vocab_size}")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
        initial_alphabet=alphabet, show_progress=False)
    # The trainer does not cut added tokens out of the text: left in, "<|im_end|>" would
    # spend merges on fragments like "?<|" that encoding never produces.
    pattern = re.compile("|".join(re.escape(t) for t in specials))
    pieces = (piece for text in texts for piece in pattern.split(text) if piece)
    tok.train_from_iterator(pieces, trainer=trainer)

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, bos_token=None,
        unk_token=None, chat_template=CHATML_TEMPLATE,
        extra_special_tokens=[t for t in specials if t not in (IM_END, PAD)])
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(str(out_dir))
    return hf


# -- training on the Data tab's sources (the UI's "Train a new tokenizer") -------------------

TOKENIZER_ROWS = 20_000  # enough text for a small BPE; keeps training to seconds


def _strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, out)


def source_texts(sources_text: str, limit: int = TOKENIZER_ROWS) -> list[str]:
    """Every string in the rows of the Data tab's sources (prompts, replies, messages)."""
    from studio.data import parse_source_lines
    from studio.data.sources import read_source

    texts: list[str] = []
    for i, source in enumerate(parse_source_lines(sources_text or "")):
        raw = read_source(source, i)
        rows = raw.rows if raw.rows is not None else raw.sample(limit)
        for row in rows[:limit]:
            _strings(row, texts)
    return texts


def tokenizer_dir(runs_dir, name: str) -> Path:
    from studio.jobs import runs_root

    return runs_root(runs_dir) / "tokenizers" / name


def train_from_sources(sources_text: str, vocab_size, name: str, runs_dir) -> tuple[str, str]:
    """(folder, message). Raises ValueError naming the field on bad input."""
    name = (name or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError("tokenizer name: use letters, digits, '.', '_' or '-' (e.g. my-bpe-4k)")
    if not vocab_size or int(vocab_size) < 300:
        raise ValueError("tokenizer vocab size: give at least 300 (256 bytes + special tokens + merges)")
    texts = source_texts(sources_text)
    if not texts:
        raise ValueError("data.sources: the Data tab has no sources with text; add one to train a tokenizer on")
    out = tokenizer_dir(runs_dir, name)
    tok = train_tokenizer(texts, int(vocab_size), out)
    fewer = (f" (fewer than the {int(vocab_size):,} asked: no more pairs occur twice in this text)"
             if len(tok) < int(vocab_size) else "")
    return str(out), f"Trained **{name}** on {len(texts):,} texts: {len(tok):,} tokens{fewer}, saved to `{out}`."
