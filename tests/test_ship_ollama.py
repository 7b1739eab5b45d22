"""The Modelfile's TEMPLATE renders the same prompt text as the tokenizer's chat template.

Honest about the method: there is no Go here, so the TEMPLATE is rendered by the small
renderer below, which implements the part of Go's text/template the Modelfile uses
(range over .Messages with an index, if/else if/else/end, eq on a string, .Role,
.Content, quoted strings) with Go's semantics for those (an index of 0 is false) and
refuses anything else, so a TEMPLATE outside that subset fails here instead of passing."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from studio.ship import ollama

ROOT = Path(__file__).resolve().parent.parent
ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 plus 3?"}],
    [{"role": "system", "content": "You add numbers.\nAnswer briefly."},
     {"role": "user", "content": "What is 10 plus 32?"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Add 7 and 8, {please}."}],
]


def _parse(tokens, i=0, stop=("end",)):
    """[(kind, value)...] -> a node list up to one of `stop`; returns (nodes, index, stop word)."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        if value == "end" or value == "else" or value.startswith("else if "):
            if value.split(" ")[0] not in ("end", "else") or "end" not in stop:
                raise AssertionError(f"unexpected {{{{ {value} }}}}")
            return nodes, i, value
        if value.startswith("if "):
            branches, cond = [], value[3:]
            while True:
                body, i, word = _parse(tokens, i)
                branches.append((cond, body))
                if word == "end":
                    break
                cond = word[8:] if word.startswith("else if ") else "true"
            nodes.append(("if", branches))
        elif value == "range $i, $_ := .Messages":
            body, i, word = _parse(tokens, i)
            assert word == "end", "no else in range"
            nodes.append(("range", body))
        elif value in (".Role", ".Content") or re.fullmatch(r'"[^"]*"', value):
            nodes.append(("print", value))
        else:
            raise AssertionError(f"outside the supported Go template subset: {{{{ {value} }}}}")
    return nodes, i, None


def _value(expr: str, dot: dict, index: int | None):
    if expr == "true":
        return True
    if expr == "$i":
        return index
    if expr in (".Role", ".Content"):
        return dot[expr[1:].lower()]
    m = re.fullmatch(r'eq \.Role "([^"]*)"', expr)
    if m:
        return dot["role"] == m.group(1)
    if re.fullmatch(r'"[^"]*"', expr):
        return expr[1:-1]
    raise AssertionError(f"outside the supported subset: {expr}")


def _exec(nodes, messages, dot=None, index=None) -> str:
    out = []
    for kind, value in nodes:
        if kind == "text":
            out.append(value)
        elif kind == "print":
            out.append(str(_value(value, dot, index)))
        elif kind == "range":
            out.extend(_exec(value, messages, m, n) for n, m in enumerate(messages))
        else:
            for cond, body in value:
                if _value(cond, dot, index):  # Go: 0, "" and false are false
                    out.append(_exec(body, messages, dot, index))
                    break
    return "".join(out)


def render_go(template: str, messages: list[dict]) -> str:
    tokens, pos = [], 0
    for m in ACTION.finditer(template):
        assert not (m.group(1) or m.group(3)), "the Modelfile must not trim (it would eat the template's newlines)"
        tokens += [("text", template[pos:m.start()]), ("action", m.group(2))]
        pos = m.end()
    tokens.append(("text", template[pos:]))
    nodes, _, word = _parse([t for t in tokens if t != ("text", "")], stop=())
    assert word is None
    return _exec(nodes, messages)


def test_the_renderer_follows_go_on_a_known_template():
    # Ollama's own style of ChatML template, rendered by hand the way Go renders it
    tpl = '{{ range $i, $_ := .Messages }}{{ if $i }}|{{ end }}{{ if eq .Role "user" }}U:{{ .Content }}' \
          '{{ else }}{{ .Role }}:{{ .Content }}{{ end }}{{ end }}{{ "{{" }}'
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert render_go(tpl, msgs) == "U:a|assistant:b{{"
    with pytest.raises(AssertionError, match="subset"):
        render_go("{{ .Prompt }}", msgs)


def modelfile_template(text: str) -> str:
    return re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)


def test_the_studio_tokenizer_template_renders_the_same_in_the_modelfile(tmp_path):
    tok = AutoTokenizer.from_pretrained(ROOT / "assets/tokenizer")
    gguf = tmp_path / "run" / "model-q8_0.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    path, command = ollama.write_modelfile(gguf, tok, system="You add numbers.")
    text = path.read_text()
    assert text.startswith("FROM ./model-q8_0.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text and 'SYSTEM """You add numbers."""' in text
    assert command == f"cd {tmp_path / 'run'} && ollama create run -f Modelfile"
    assert [p.name for p in gguf.parent.iterdir() if p.name.startswith(".")] == [], "no temporary file left"
    go = modelfile_template(text)
    for conv in CONVERSATIONS:
        assert render_go(go, conv) == tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)


LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' "
          "+ m['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
         "{% endif %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
         "{{ '<start_of_turn>' + role + '\n' + m['content'] + '<end_of_turn>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
LLAMA2 = ("{% for m in messages %}{% if loop.index0 == 0 and m['role'] == 'system' %}{% set sys = m['content'] %}"
          "{% elif m['role'] == 'user' %}{{ '[INST] ' + (sys + '\n\n' if sys is defined and loop.index0 == 1 else '') "
          "+ m['content'] + ' [/INST]' }}{% else %}{{ m['content'] + '</s>' }}{% endif %}{% endfor %}")


@pytest.mark.parametrize("name,template", [("llama3", LLAMA3), ("gemma", GEMMA)])
def test_other_families_translate_exactly(tmp_path, name, template):
    src = ROOT / "assets/tokenizer"
    shutil.copytree(src, tmp_path / name)
    (tmp_path / name / "chat_template.jinja").write_text(template)
    tok = AutoTokenizer.from_pretrained(tmp_path / name)
    tok.bos_token = "<|endoftext|>"  # so {{ bos_token }} prints something to place
    go = modelfile_template(ollama.modelfile_text("m.gguf", tok))
    convs = CONVERSATIONS if name != "gemma" else [[m for m in c if m["role"] != "system"] for c in CONVERSATIONS]
    for conv in convs:
        assert render_go(go, conv) == tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)


def test_a_template_that_merges_the_system_prompt_is_refused(tmp_path):
    shutil.copytree(ROOT / "assets/tokenizer", tmp_path / "t")
    (tmp_path / "t" / "chat_template.jinja").write_text(LLAMA2)
    tok = AutoTokenizer.from_pretrained(tmp_path / "t")
    with pytest.raises(ollama.TemplateError, match="ollama: the chat template cannot be translated.*content once"):
        ollama.modelfile_text("m.gguf", tok)
