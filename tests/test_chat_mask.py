"""The assistant-only loss mask for chat templates without {% generation %} marks
(studio.data.chat_mask): the five family templates render exactly as published, and on a
known conversation each masks exactly the assistant's words and its end-of-turn token;
where marks exist the prefix-rendering mask equals theirs; a template it cannot split is
refused, never trained whole."""
from __future__ import annotations

import json

import datasets
import pytest

from studio.data import DataError, chat_mask
from studio.methods.sft_tokens import tokenise_chats
from tests.chat_templates import FAMILIES, family_tokenizer
from tests.test_sft_tokens import chats

CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "5"},
                {"role": "user", "content": "And doubled?"},
                {"role": "assistant", "content": "10"}]

# The published formats, written out by hand for CONVERSATION.
RENDERED = {
    "llama3": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 3?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n5<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nAnd doubled?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n10<|eot_id|>"),
    "qwen2.5": ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
                "<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nAnd doubled?<|im_end|>\n"
                "<|im_start|>assistant\n10<|im_end|>\n"),
    "gemma3": ("<bos><start_of_turn>user\nBe brief.\n\nWhat is 2 + 3?<end_of_turn>\n<start_of_turn>model\n5<end_of_turn>\n"
               "<start_of_turn>user\nAnd doubled?<end_of_turn>\n<start_of_turn>model\n10<end_of_turn>\n"),
    "phi3": ("<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 2 + 3?<|end|>\n<|assistant|>\n5<|end|>\n"
             "<|user|>\nAnd doubled?<|end|>\n<|assistant|>\n10<|end|>\n<|endoftext|>"),
    "mistral": "<s> [INST] Be brief.\n\nWhat is 2 + 3? [/INST] 5</s> [INST] And doubled? [/INST] 10</s>",
}
GENERATION_PROMPT = {"llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     "qwen2.5": "<|im_start|>assistant\n", "gemma3": "<start_of_turn>model\n",
                     "phi3": "<|assistant|>\n", "mistral": ""}
# What each assistant turn trains: its words and the end-of-turn token the model must learn to
# stop on; not the newline that only separates turns, not Phi-3's closing eos. Mistral's
# answer starts with the space the template puts after [/INST]: the model generates it.
TRAINED = {"llama3": ["5<|eot_id|>", "10<|eot_id|>"], "qwen2.5": ["5<|im_end|>", "10<|im_end|>"],
           "gemma3": ["5<end_of_turn>", "10<end_of_turn>"], "phi3": ["5<|end|>", "10<|end|>"],
           "mistral": [" 5</s>", " 10</s>"]}


def runs(tokenizer, ids, mask) -> list[str]:
    """The text of each run of masked tokens."""
    out, current = [], []
    for token, m in zip(ids + [None], mask + [0]):
        if m:
            current.append(token)
        elif current:
            out.append(tokenizer.decode(current))
            current = []
    return out


@pytest.fixture(scope="module")
def tokenizers():
    return {family: family_tokenizer(family) for family in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_templates_render_as_published(tokenizers, family):
    tok = tokenizers[family]
    assert not chat_mask.has_generation_marks(tok)
    assert tok.apply_chat_template(CONVERSATION, tokenize=False) == RENDERED[family]
    prompt = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(GENERATION_PROMPT[family] or "[/INST]")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mask_token_by_token(tokenizers, family):
    tok = tokenizers[family]
    method = chat_mask.mask_method(tok)
    assert method.how == chat_mask.PREFIX_RENDERING
    ids, masks = chat_mask.encode(tok, [CONVERSATION], method.how)
    ids, mask = ids[0], masks[0]
    assert ids == tok.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]
    assert runs(tok, ids, mask) == TRAINED[family]
    # every other token, system and user words and all headers among them, takes no loss
    unmasked = tok.decode([t for t, m in zip(ids, mask) if not m])
    assert "Be brief." in unmasked and "What is 2 + 3?" in unmasked and "And doubled?" in unmasked
    assert len(unmasked) + sum(len(r) for r in TRAINED[family]) == len(RENDERED[family])


def test_llama3_boundaries_inside_tokens_use_character_offsets(tokenizers):
    """The byte-level BPE makes the header's blank line one token when it ends the prompt
    but two before a word: the prompt's tokens are not a prefix of the conversation's, so
    the span is mapped by character offsets, and the mask is still exact."""
    tok = tokenizers["llama3"]
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]
    prompt = tok.apply_chat_template(conversation[:1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(conversation, tokenize=False)
    assert full == prompt + "Hello there.<|eot_id|>"
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    head = tok(prompt, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(head)] != head
    assert "character offsets" in chat_mask.mask_method(tok).reason
    ids, mask, offsets_used = chat_mask.prefix_mask(tok, conversation)
    assert offsets_used and ids == full_ids
    assert runs(tok, ids, mask) == ["Hello there.<|eot_id|>"]


def test_qwen_tool_calls_and_default_system_prompt(tokenizers):
    tok = tokenizers["qwen2.5"]
    tools = [{"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                               "parameters": {"type": "object", "properties": {}}}}]
    conversation = [{"role": "user", "content": "Add 2 and 3."},
                    {"role": "assistant", "content": None,
                     "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
                    {"role": "tool", "content": "5"},
                    {"role": "assistant", "content": "It is 5."}]
    text = tok.apply_chat_template(conversation, tools=tools, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                           "assistant.\n\n# Tools\n")
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    assert f"<|im_start|>assistant\n{call}<|im_end|>\n<|im_start|>user\n<tool_response>\n5\n</tool_response>" in text
    ids, mask, _ = chat_mask.prefix_mask(tok, conversation, tools=tools)
    assert runs(tok, ids, mask) == [call + "<|im_end|>", "It is 5.<|im_end|>"]
    # without tools the default system prompt is still there, and still untrained
    ids, mask, _ = chat_mask.prefix_mask(tok, CONVERSATION[1:])
    assert "You are Qwen" in tok.decode(ids) and "You are Qwen" not in "".join(runs(tok, ids, mask))


def test_prefix_rendering_equals_generation_marks():
    """On the studio's own ChatML template (which has marks) both paths give the same ids
    and masks, on rows with system prompts, two exchanges and long answers."""
    from studio.model import load_tokenizer
    from studio.spec import ModelSpec
    from tests.conftest import TINY_MODEL

    tok = load_tokenizer(ModelSpec(**TINY_MODEL))
    assert chat_mask.mask_method(tok).how == chat_mask.GENERATION_MARKS
    rows = [r["messages"] for r in chats()]
    marks = chat_mask.encode(tok, rows, chat_mask.GENERATION_MARKS)
    assert chat_mask.encode(tok, rows, chat_mask.PREFIX_RENDERING) == marks
    assert sum(map(sum, marks[1])) > 0


def test_sft_tokens_mask_a_template_without_marks(tokenizers):
    """Before, a template without marks trained every token of the conversation, system
    prompt included, with no word of it; now its labels keep only the assistant's turns."""
    tok = tokenizers["qwen2.5"]
    ds = datasets.Dataset.from_list([{"messages": CONVERSATION}])
    row = tokenise_chats(ds, tok, 256, assistant_only=True)[0]
    trained = [t for t in row["labels"] if t != -100]
    assert tok.decode(trained) == "".join(TRAINED["qwen2.5"])
    whole = tokenise_chats(ds, tok, 256, assistant_only=False)[0]
    assert whole["labels"] == whole["input_ids"] == row["input_ids"]


# A template that writes the number of turns first: no prefix of the conversation renders
# as a prefix of the whole, so no turn can be located.
COUNTING = ("{{ messages | length }} turns\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant: {% endif %}")


def test_a_template_it_cannot_split_is_refused(tokenizers, tmp_path):
    from studio.methods.sft import loss_mask
    from studio.spec import RunSpec

    tok = family_tokenizer("qwen2.5")
    tok.chat_template = COUNTING
    method = chat_mask.mask_method(tok)
    assert method.how == chat_mask.NONE and "not a prefix" in method.reason
    spec = RunSpec()
    with pytest.raises(DataError) as err:
        loss_mask(tok, spec)
    assert err.value.field == "data.assistant_only_loss"
    assert "data.assistant_only_loss: false" in err.value.message and "{% generation %}" in err.value.message
    with pytest.raises(chat_mask.MaskError):
        tokenise_chats(datasets.Dataset.from_list([{"messages": CONVERSATION}]), tok, 64, assistant_only=True)


def test_preview_says_how_the_mask_was_found(tokenizers, tmp_path):
    from studio.data.preview import preview
    from studio.spec import DataSource, RunSpec

    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": CONVERSATION}) + "\n" for _ in range(6)))
    spec = RunSpec()
    spec.method.name = "sft"
    spec.data.sources = [DataSource(path=str(path))]
    spec.data.eval_fraction = 0.0
    mask = preview(spec, 3, tokenizers["gemma3"])["loss_mask"]
    per_row = len(family_tokenizer("gemma3")("".join(TRAINED["gemma3"]), add_special_tokens=False)["input_ids"])
    assert mask["how"] == "prefix rendering" and mask["rows"] == 6 and mask["trained"] == 6 * per_row
    assert "prefix rendering" in mask["note"] and f"{6 * per_row} of {mask['tokens']} tokens" in mask["note"]
    spec.data.assistant_only_loss = False
    mask = preview(spec, 3, tokenizers["gemma3"])["loss_mask"]
    assert mask["how"] == "none" and mask["trained"] == mask["tokens"] > 6 * per_row
    bad = family_tokenizer("gemma3")
    bad.chat_template = COUNTING
    spec.data.assistant_only_loss = True
    mask = preview(spec, 3, bad)["loss_mask"]
    assert mask["how"] == "none" and "data.assistant_only_loss" in mask["note"]
