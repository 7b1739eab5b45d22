"""Tokenizers and existing models: hub ids, local folders, run directories, adapters.

Only safetensors weights are read (a pickled .bin/.pt can run code when unpickled), and
trust_remote_code stays off unless the ModelSpec turns it on.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from studio.estimate import REPO_ROOT
from studio.model.build import build_model, torch_dtype

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _local(path: str) -> Path | None:
    """A local folder for `path` (as given, or relative to the repository), else None
    (then it is a hub id)."""
    if not path:
        return None
    for candidate in (Path(path).expanduser(), REPO_ROOT / path):
        if candidate.is_dir():
            return candidate
    return None


def resolve_model_path(name_or_path: str) -> tuple[str, bool]:
    """(folder or hub id, is_adapter). A run directory resolves to its final/."""
    folder = _local(name_or_path)
    if folder is None:
        if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
            raise ValueError(f"model.name_or_path: no folder '{name_or_path}'; give an existing model "
                             "folder, a run directory, or a hub id like org/name")
        return name_or_path, False
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        if (folder / "final").is_dir():
            folder = folder / "final"
        else:
            raise ValueError(f"model.name_or_path: '{name_or_path}' has neither config.json, "
                             "adapter_config.json nor a final/ folder; point at a model or a finished run")
    is_adapter = (folder / "adapter_config.json").is_file()
    _require_safetensors(folder, is_adapter)
    return str(folder), is_adapter


def _require_safetensors(folder: Path, is_adapter: bool) -> None:
    files = [p.name for p in folder.iterdir() if p.is_file()]
    if any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    what = "adapter" if is_adapter else "model"
    if pickles:
        raise ValueError(f"model.name_or_path: '{folder}' holds only pickled weights ({', '.join(sorted(pickles))}); "
                         f"the studio loads safetensors only. Re-save the {what} with "
                         "save_pretrained(..., safe_serialization=True) and point at that folder")
    raise ValueError(f"model.name_or_path: '{folder}' has no *.safetensors weights; point at a saved {what}")


def adapter_base(adapter_dir: str) -> str:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path") or ""
    if not base:
        raise ValueError(f"model.name_or_path: the adapter in '{adapter_dir}' does not name its base model "
                         "(adapter_config.json base_model_name_or_path)")
    return base


def load_tokenizer(model_spec):
    """The tokenizer for a spec: the spec's tokenizer for scratch, the model's own for a
    pretrained one. Sets a pad token when missing; ChatML when there is no chat template."""
    from transformers import AutoTokenizer

    if model_spec.source == "pretrained":
        where, is_adapter = resolve_model_path(model_spec.name_or_path)
        if is_adapter and not (Path(where) / "tokenizer_config.json").is_file():
            where, _ = resolve_model_path(adapter_base(where))
    else:
        folder = _local(model_spec.tokenizer)
        where = str(folder) if folder is not None else model_spec.tokenizer
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=model_spec.trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    if not tokenizer.chat_template:
        from studio.tokenizer import CHATML_TEMPLATE

        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def quantization_config(method_spec, compute_dtype=None):
    import torch
    from transformers import BitsAndBytesConfig

    chosen = torch_dtype(method_spec.compute_dtype) if method_spec.compute_dtype != "auto" else compute_dtype
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=method_spec.quant_type,
        bnb_4bit_use_double_quant=method_spec.double_quant,
        bnb_4bit_compute_dtype=chosen or torch.float32)


def _from_pretrained(where: str, model_spec, quant, dtype, device):
    from transformers import AutoModelForCausalLM

    kwargs = dict(use_safetensors=True, trust_remote_code=model_spec.trust_remote_code)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device})
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype or "auto", **kwargs)
    if quant is None:
        return model.to(device)
    if device == "cpu":
        _avoid_cpu_packing_crash(model)
    return model


CPU_4BIT_BLOCK = 64  # bitsandbytes' packed CPU 4-bit matmul works in blocks of 64


def _avoid_cpu_packing_crash(model) -> None:
    """bitsandbytes repacks a 4-bit Linear for its fast CPU kernel at the first no-grad
    eval forward (on CPUs with AVX512-BF16), and that repacking fails for a layer whose
    widths are not multiples of 64 (e.g. d_ff=352). Those layers keep the generic 4-bit
    path; training never takes the packed one."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and (module.in_features % CPU_4BIT_BLOCK
                                                      or module.out_features % CPU_4BIT_BLOCK):
            module.support_avx512bf16_for_cpu = False


def build_or_load(model_spec, tokenizer=None, method_spec=None, dtype=None, device: str = "cpu"):
    """A scratch model (vocab from the tokenizer when the spec leaves it empty) or a
    pretrained one (hub id, folder, run dir, adapter folder + its base). With
    method_spec.regime == "qlora" the base is loaded in 4 bits."""
    import studio.model  # noqa: F401  (registers the studio architecture)

    dt = torch_dtype(dtype)
    qlora = method_spec is not None and method_spec.regime == "qlora"
    quant = quantization_config(method_spec, dt) if qlora else None
    if model_spec.source == "scratch":
        model = build_model(model_spec, tokenizer, dtype=dt)
        if quant is None:
            return model.to(device)
        # bitsandbytes quantises while loading: round-trip the fresh weights through disk.
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            return _from_pretrained(tmp, model_spec, quant, dt, device)

    where, is_adapter = resolve_model_path(model_spec.name_or_path)
    if not is_adapter:
        return _from_pretrained(where, model_spec, quant, dt, device)
    from peft import PeftModel

    base_where, base_is_adapter = resolve_model_path(adapter_base(where))
    if base_is_adapter:
        raise ValueError(f"model.name_or_path: the base of '{where}' is itself an adapter; merge it first (studio export)")
    base = _from_pretrained(base_where, model_spec, quant, dt, device)
    keep_adapter = method_spec is None or method_spec.regime in ("lora", "dora", "qlora")
    # Loading for inference (no method) must not ask for trainable: peft refuses that for
    # prefix/prompt adapters.
    model = PeftModel.from_pretrained(base, where, is_trainable=keep_adapter and method_spec is not None)
    # Another regime starts from the merged weights (a 4-bit base cannot be merged into).
    return model if keep_adapter or qlora else model.merge_and_unload()
