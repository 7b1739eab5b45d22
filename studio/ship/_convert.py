"""Run llama.cpp's convert_hf_to_gguf.py (in a subprocess started by studio.ship.gguf):
`python studio/ship/_convert.py LLAMA_CPP_DIR MODEL_DIR --outfile F --outtype T`.

Two things are added to the converter, and nothing else is changed:
- its own gguf-py comes first on sys.path: the converter and the gguf package move
  together in llama.cpp, the registry's `gguf` may be older or newer than this copy;
- a tokenizer whose pre-tokenizer hash it does not know is named by its configuration
  when that configuration is one llama.cpp implements. The studio's tokenizer (and many
  small custom ones) split digits one by one and then use GPT-2's byte-level regex: the
  pre-tokenizer llama.cpp calls "smollm" (also starcoder's), so it is written as that;
  the verify step then checks llama.cpp tokenises prompts exactly as transformers does.
- `{% generation %}` marks (transformers' assistant-mask extension) are dropped from the
  chat template written into the file: they change no text, and llama.cpp's and other
  Jinja engines refuse the unknown tag.
"""
from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

_GENERATION_TAG = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")

# tokenizer.json pre_tokenizer configurations -> llama.cpp's name for the same splitting
KNOWN_PRE_TOKENIZERS = {
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
}


def _matches(config, pattern) -> bool:
    if isinstance(pattern, dict):
        return isinstance(config, dict) and all(_matches(config.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(config, list) and len(config) == len(pattern) and all(map(_matches, config, pattern))
    return config == pattern


def pre_tokenizer_name(model_dir: Path) -> str | None:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if (data.get("model") or {}).get("type") != "BPE":
        return None
    return next((name for name, pat in KNOWN_PRE_TOKENIZERS.items() if _matches(data.get("pre_tokenizer"), pat)), None)


def strip_generation_tags(template):
    if isinstance(template, str):
        return _GENERATION_TAG.sub("", template)
    if isinstance(template, list):
        return [{**t, "template": _GENERATION_TAG.sub("", t.get("template", ""))} for t in template]
    return template


def main(argv: list[str]) -> None:
    root, args = Path(argv[0]), argv[1:]
    here = Path(__file__).resolve().parent  # run by path: its folder holds a gguf.py that is not gguf
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path[:0] = [str(root / "gguf-py"), str(root)]
    try:
        import gguf
        from conversion.base import TextModel
    except ImportError:  # an older llama.cpp checkout (LLAMA_CPP_DIR): its converter as it is
        _run_converter(root, args)
        return

    add_template = gguf.GGUFWriter.add_chat_template
    gguf.GGUFWriter.add_chat_template = lambda self, value: add_template(self, strip_generation_tags(value))

    known_pre = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return known_pre(self, tokenizer)
        except NotImplementedError:
            name = pre_tokenizer_name(self.dir_model)
            if name is None:
                raise
            print(f"studio: pre-tokenizer named '{name}' from tokenizer.json's configuration", file=sys.stderr)
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    _run_converter(root, args)


def _run_converter(root: Path, args: list[str]) -> None:
    sys.argv = [str(root / "convert_hf_to_gguf.py"), *args]
    runpy.run_path(str(root / "convert_hf_to_gguf.py"), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
