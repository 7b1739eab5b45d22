"""An Ollama Modelfile beside a GGUF: FROM, TEMPLATE (the model's chat template in Go
template syntax), PARAMETER stop, SYSTEM.

The translation is by probing, not by parsing Jinja: the tokenizer's own template renders
a few conversations with marker contents, and from where the markers land we read each
role's text before and after its content, the text between messages and the generation
prompt. That is the per-message shape of ChatML, Llama 3, Gemma, Phi-3, Zephyr and the
studio's template. The shape must reproduce the template's text on every probe, else we
refuse: a Modelfile whose TEMPLATE differs from training is the gibberish people report.
(tests/test_ship_ollama.py renders the emitted Go template with a small renderer of the
Go subset used here and compares it with the tokenizer on other conversations.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROLES = ("system", "user", "assistant")
_MARK = "\u2063MSG{}\u2063"  # invisible separator: never in a template's own text


class TemplateError(ValueError):
    """The chat template cannot be expressed in the per-message Go template."""


@dataclass
class Shape:
    begin: str
    prefix: dict
    suffix: dict
    sep: str
    generation: str

    def render(self, messages: list[dict]) -> str:
        """What the Go template renders (for the probes' check)."""
        parts = [self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]] for m in messages]
        return self.begin + self.sep.join(parts) + self.generation


def _render(tokenizer, messages, generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _probes(roles) -> list[list[dict]]:
    convs = [[("user",)], [("user",), ("assistant",), ("user",)]]
    if "system" in roles:
        convs += [[("system",), ("user",)], [("system",), ("user",), ("assistant",), ("user",), ("assistant",), ("user",)]]
    return [[{"role": r, "content": _MARK.format(i)} for i, (r,) in enumerate(c)] for c in convs]


def _split(text: str, mark: str) -> tuple[str, str]:
    if text.count(mark) != 1:
        raise TemplateError("the template does not place each message's content once")
    head, tail = text.split(mark)
    return head, tail


def shape_of(tokenizer) -> Shape:
    """The per-message shape of `tokenizer.chat_template`, checked on the probes."""
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template")
    roles, heads, tails = [], {}, {}
    for role in ROLES:
        try:
            heads[role], tails[role] = _split(_render(tokenizer, [{"role": role, "content": _MARK.format(0)}], False),
                                              _MARK.format(0))
            roles.append(role)
        except TemplateError:
            raise
        except Exception:  # noqa: BLE001 - a template may refuse a role (Gemma has no system): leave it out
            continue
    if "user" not in roles or "assistant" not in roles:
        raise TemplateError("the template must render a lone user and a lone assistant message")
    one = _render(tokenizer, [{"role": "user", "content": "x"}], False)
    gen = _render(tokenizer, [{"role": "user", "content": "x"}], True)
    if not gen.startswith(one):
        raise TemplateError("the generation prompt is not added at the end")
    pair = _render(tokenizer, [{"role": "user", "content": _MARK.format(0)}, {"role": "assistant", "content": _MARK.format(1)}], False)
    mid = pair.split(_MARK.format(0))[1].split(_MARK.format(1))[0]
    for cut in range(len(heads["user"]) + 1):  # the shortest text that comes once, at the start
        begin = heads["user"][:cut]
        if not all(heads[r].startswith(begin) for r in roles):
            break
        prefix = {r: heads[r][cut:] for r in roles}
        if not (mid.startswith(tails["user"]) and mid.endswith(prefix["assistant"])):
            continue
        sep = mid[len(tails["user"]):len(mid) - len(prefix["assistant"])]
        shape = Shape(begin, prefix, dict(tails), sep, gen[len(one):])
        if all(shape.render(c) == _render(tokenizer, c, True) for c in _probes(roles)):
            return shape
    raise TemplateError("the template is not one text per message (e.g. it merges the system prompt into the first "
                        "user turn or adds a default system message)")


def _literal(text: str) -> str:
    """Text as Go template output: `{{` would open an action, so it is printed as a string."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(shape: Shape) -> str:
    """The Go template over Ollama's .Messages. No `{{-` trimming anywhere: the literal
    text (newlines included) must come out exactly as the chat template has it."""
    branches = []
    for i, role in enumerate(shape.prefix):
        cond = "if" if i == 0 else "else if"
        branches.append(f'{{{{ {cond} eq .Role "{role}" }}}}{_literal(shape.prefix[role])}{{{{ .Content }}}}'
                        f"{_literal(shape.suffix[role])}")
    body = "".join(branches) + "{{ end }}"
    return (f"{_literal(shape.begin)}{{{{ range $i, $_ := .Messages }}}}{{{{ if $i }}}}{_literal(shape.sep)}{{{{ end }}}}"
            f"{body}{{{{ end }}}}{_literal(shape.generation)}")


def stop_strings(tokenizer) -> list[str]:
    from studio.inference import stop_token_ids

    return [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]


def _quoted(text: str) -> str:
    # a Modelfile value in triple quotes holds newlines; a triple quote inside cannot be escaped
    if '"""' in text:
        raise TemplateError('a template or system prompt containing """ cannot be written in a Modelfile')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, tokenizer, system: str | None = None) -> str:
    try:
        shape = shape_of(tokenizer)
    except TemplateError as exc:
        raise TemplateError(f"ollama: the chat template cannot be translated to a Modelfile TEMPLATE ({exc}); "
                            "the GGUF is fine for llama.cpp, which reads the template from the file; for Ollama "
                            "write TEMPLATE by hand (see Ollama's docs/template.md)") from None
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(go_template(shape))}"]
    lines += [f'PARAMETER stop "{s}"' for s in stop_strings(tokenizer)]
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_file: str | Path, tokenizer, system: str | None = None, name: str | None = None
                    ) -> tuple[Path, str]:
    """Modelfile beside `gguf_file` (written to a temporary name, then renamed) and the
    `ollama create` command that registers it."""
    gguf_file = Path(gguf_file)
    text = modelfile_text(gguf_file.name, tokenizer, system)
    out = gguf_file.parent / "Modelfile"
    tmp = out.with_name(f".Modelfile.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    name = name or gguf_file.parent.name.lower().replace(" ", "-")
    return out, f"cd {gguf_file.parent} && ollama create {name} -f Modelfile"
