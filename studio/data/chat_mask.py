"""Which tokens of a conversation are the assistant's: the loss mask of assistant-only SFT,
for any chat template.

transformers finds assistant tokens only through `{% generation %}` marks in the template
(return_assistant_tokens_mask); the published templates of Llama 3, Qwen 2.5, Gemma,
Phi-3 and Mistral have none. Without marks the spans are found by rendering growing
prefixes of the conversation: the text before assistant turn k is the rendering of turns
0..k-1 with add_generation_prompt (what the model is given at inference), and the turn
ends where the rendering of turns 0..k stops agreeing with the whole conversation's. The
span is then mapped to tokens by the token range it adds (when the prefix's tokens are a
prefix of the whole rendering's) or else by the tokenizer's character offsets, the rule
transformers uses for generation marks, so both paths give the same mask where marks
exist (a test holds them equal).

Imports nothing heavy at module level: the data layer's preview uses it too."""
from __future__ import annotations

import functools
from dataclasses import dataclass

GENERATION_MARKS = "generation marks"
PREFIX_RENDERING = "prefix rendering"
NONE = "none"
FIELD = "data.assistant_only_loss"

# A conversation the template must split cleanly before prefix rendering is trusted: its
# system and user words must fall outside the spans, each answer inside its own.
_PROBE = [{"role": "system", "content": "Probe rules here."},
          {"role": "user", "content": "Probe question one?"},
          {"role": "assistant", "content": "Probe answer one."},
          {"role": "user", "content": "Probe question two?"},
          {"role": "assistant", "content": "Probe answer two."}]
_SENTINEL = {"role": "user", "content": "(next)"}


class MaskError(ValueError):
    """The assistant's tokens cannot be told apart (a plain ValueError subclass so it
    crosses datasets' worker processes intact)."""


@dataclass
class MaskMethod:
    how: str  # GENERATION_MARKS | PREFIX_RENDERING | NONE
    reason: str = ""  # why NONE, or a note on how PREFIX_RENDERING mapped its spans

    def describe(self) -> str:
        return self.how + (f" ({self.reason})" if self.reason else "")


def has_generation_marks(tokenizer) -> bool:
    """Whether the template marks assistant turns ({% generation %}, any whitespace control)."""
    import re

    return re.search(r"{%-?\s*generation\s*-?%}", getattr(tokenizer, "chat_template", None) or "") is not None


def mask_method(tokenizer) -> MaskMethod:
    """How this tokenizer's template gives the assistant mask, decided before any data is
    read: its marks, else prefix rendering if it splits a probe conversation cleanly."""
    if has_generation_marks(tokenizer):
        return MaskMethod(GENERATION_MARKS)
    try:
        probe = _probe_conversation(tokenizer)
        _, _, offsets_used = prefix_mask(tokenizer, probe, check=True)
    except MaskError as exc:
        return MaskMethod(NONE, str(exc))
    note = "turn boundaries fall inside tokens: mapped by character offsets" if offsets_used else ""
    return MaskMethod(PREFIX_RENDERING, note)


def refusal(tokenizer_name: str, method: MaskMethod) -> str:
    """The message that stops an assistant-only run whose mask cannot be found."""
    return (f"the chat template of {tokenizer_name} has no {{% generation %}} marks and its assistant turns "
            f"could not be found by rendering prefixes of the conversation: {method.reason}. Set "
            f"{FIELD}: false to train on every token of the conversation (system and user turns included), "
            "or use a tokenizer whose chat_template marks the assistant's turns with {% generation %}.")


def encode(tokenizer, conversations: list, how: str) -> tuple[list[list[int]], list[list[int]]]:
    """(input_ids, assistant masks) of each conversation, as apply_chat_template would
    tokenise it. `how`: GENERATION_MARKS (transformers' own path, the one trl takes),
    PREFIX_RENDERING, or NONE (every token counts)."""
    if how == GENERATION_MARKS:
        out = tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return out["input_ids"], out["assistant_masks"]
    if how == NONE:
        ids = tokenizer.apply_chat_template(conversations, tokenize=True, return_dict=True)["input_ids"]
        return ids, [[1] * len(row) for row in ids]
    ids, masks = [], []
    for conversation in conversations:
        try:
            row_ids, row_mask, _ = prefix_mask(tokenizer, conversation)
        except MaskError as exc:
            raise MaskError(f"the assistant's tokens of the conversation starting {_opening(conversation)} "
                            f"cannot be found: {exc}") from None
        ids.append(row_ids)
        masks.append(row_mask)
    return ids, masks


def prefix_mask(tokenizer, conversation: list, check: bool = False, tools=None) -> tuple[list[int], list[int], bool]:
    """(input_ids, mask, whether any boundary needed character offsets) for one
    conversation by prefix rendering. `check`: also require every answer's words inside its
    span and no other turn's words in any (the probe's test)."""
    messages = [{k: v for k, v in m.items() if v is not None} for m in conversation]
    full, spans = _char_spans(tokenizer, messages, tools)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    mask = [0] * len(ids)
    offsets_used = False
    for start, end in spans:
        rng = _token_range(tokenizer, full, ids, start, end)
        if rng is None:  # a boundary inside a token: the tokens whose characters the span holds
            rng = _offset_range(enc, start, end, len(ids))
            offsets_used = True
        for t in range(*rng):
            mask[t] = 1
    if check:
        _check_spans(messages, full, spans)
    return ids, mask, offsets_used


def _render(tokenizer, messages: list, prompt: bool = False, tools=None) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=prompt)
    except Exception as exc:  # noqa: BLE001 - jinja's TemplateError and raise_exception alike
        raise MaskError(f"the template refuses {_roles(messages)}: {exc}") from exc


def _char_spans(tokenizer, messages: list, tools=None) -> tuple[str, list[tuple[int, int]]]:
    """The whole rendering and the character span of each assistant turn in it."""
    render = functools.partial(_render, tokenizer, tools=tools)
    full = render(messages)
    # the end of the last turn is found against a rendering that goes on past it, so a
    # template that closes a conversation differently (Phi-3 appends its eos) still ends
    # the span where the turn itself ends
    try:
        extended = render(messages + [_SENTINEL]) if messages[-1].get("role") == "assistant" else full
    except MaskError:  # the template will not take a user turn there: the span runs to the end
        extended = full
    specials = _special_strings(tokenizer)
    spans = []
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        if k == 0:
            raise MaskError("the conversation opens with an assistant turn, so there is no prompt to render before it")
        head = render(messages[:k], prompt=True)
        if not full.startswith(head):
            raise MaskError(f"the rendering of the turns before assistant turn {k + 1} with add_generation_prompt "
                            "is not a prefix of the whole conversation's rendering")
        upto = render(messages[: k + 1])
        end = min(_common_prefix(upto, extended if k == len(messages) - 1 else full), len(full))
        end = _trim_after_special(full, len(head), _out_of_special(full, end, specials), specials)
        if end <= len(head):
            raise MaskError(f"assistant turn {k + 1} adds no text to the rendering")
        spans.append((len(head), end))
    return full, spans


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _special_strings(tokenizer) -> tuple[str, ...]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return tuple({t.content for t in added.values()} | set(getattr(tokenizer, "all_special_tokens", []) or []))


def _out_of_special(text: str, end: int, specials: tuple[str, ...]) -> int:
    """`end` moved back to the start of a special token it cuts (Phi-3: the turn rendered
    alone goes on "<|endoftext|>", the conversation "<|user|>": they agree on "<|")."""
    for s in specials:
        p = text.rfind(s, max(0, end - len(s) + 1), end + len(s) - 1)
        if s and 0 <= p < end < p + len(s):
            end = p
    return end


def _trim_after_special(text: str, start: int, end: int, specials: tuple[str, ...]) -> int:
    """The span without the whitespace that follows its closing special token (ChatML's and
    Gemma's newline after the end-of-turn token only separates turns; the model stops at the
    token and never generates it)."""
    stripped = text[start:end].rstrip()
    if len(stripped) < end - start and any(s and stripped.endswith(s) for s in specials):
        return start + len(stripped)
    return end


def _token_range(tokenizer, full: str, ids: list[int], start: int, end: int):
    """[first, last) token of a span when the tokens of the text up to each boundary are a
    prefix of the whole rendering's tokens (the token range the turn adds); else None."""
    bounds = []
    for cut in (start, end):
        head = tokenizer(full[:cut], add_special_tokens=False)["input_ids"]
        if ids[: len(head)] != head:
            return None
        bounds.append(len(head))
    return bounds[0], bounds[1]


def _offset_range(enc, start: int, end: int, n: int) -> tuple[int, int]:
    """Tokens from the one holding the span's first character to the one holding its last
    (transformers' rule for generation marks)."""
    first = enc.char_to_token(start)
    last = enc.char_to_token(end - 1)
    if first is None:
        raise MaskError("a turn boundary maps to no token (the tokenizer gives no character offsets there)")
    return first, (last + 1 if last is not None else n)


def _check_spans(messages: list, full: str, spans: list[tuple[int, int]]) -> None:
    inside = [full[a:b] for a, b in spans]
    answers = [m for m in messages if m.get("role") == "assistant"]
    for n, (message, text) in enumerate(zip(answers, inside), 1):
        content = (message.get("content") or "").strip()
        if content and content not in text:
            raise MaskError(f"assistant turn {n}'s words are not inside the span found for it")
    for message in messages:
        content = (message.get("content") or "").strip()
        if message.get("role") != "assistant" and content and any(content in text for text in inside):
            raise MaskError(f"a {message.get('role')} turn's words fall inside an assistant span")


def _probe_conversation(tokenizer) -> list:
    """The probe, without its system turn for a template that refuses one (Gemma 2)."""
    try:
        _render(tokenizer, _PROBE)
        return _PROBE
    except MaskError:
        return _PROBE[1:]


def _roles(messages: list) -> str:
    return "a conversation of " + "/".join(m.get("role", "?") for m in messages) if messages else "an empty conversation"


def _opening(conversation: list) -> str:
    words = next((m.get("content") or "" for m in conversation if m.get("role") == "user"), "")
    return repr(words[:60] + ("…" if len(words) > 60 else ""))
