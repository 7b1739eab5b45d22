"""Tokenizers and existing models: hub ids, local folders, run directories, adapters.

Only safetensors weights are read (a pickled .bin/.pt can run code when unpickled),
checked file by file in require_safetensors, the one rule every loader calls; and
trust_remote_code stays off unless the ModelSpec turns it on (and, on a hosted server,
the operator allowed it: studio.policy).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from studio.estimate import resolve_path
from studio.model.build import build_model, torch_dtype

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _local(path: str) -> Path | None:
    """A local folder for `path` (as given, or relative to the repository: the estimate's
    resolve_path, so both read the same folder), else None (then it is a hub id)."""
    folder = resolve_path(path)
    return folder if folder is not None and folder.is_dir() else None


def resolve_model_path(name_or_path: str, field: str = "model.name_or_path") -> tuple[str, bool]:
    """(folder, is_adapter). A run directory resolves to its final/; a hub id
    (org/name[@revision]) to its snapshot in the local hub cache (studio.hub). Either is
    checked file by file (require_safetensors); a local folder, on a hosted server, also
    against the model roots (studio.policy)."""
    from studio import policy

    from studio.hub import looks_like_id, resolve_model

    folder = _local(name_or_path)
    if folder is None:
        if not looks_like_id(name_or_path):
            raise ValueError(f"{field}: no folder '{name_or_path}'; give an existing model "
                             "folder, a run directory, or a hub id like org/name (or org/name@revision)")
        # A hub id becomes its snapshot folder in the hub cache (downloaded first when
        # online), so the safetensors rule below applies to exactly what is loaded.
        folder = resolve_model(name_or_path, field)
    else:
        policy.check_model_folder(folder, field)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        if (folder / "final").is_dir():
            folder = folder / "final"
        else:
            raise ValueError(f"{field}: '{name_or_path}' has neither config.json, "
                             "adapter_config.json nor a final/ folder; point at a model or a finished run")
    is_adapter = (folder / "adapter_config.json").is_file()
    require_safetensors(folder, "adapter" if is_adapter else "model", field)
    return str(folder), is_adapter


# Files a loader opens, by what the folder holds. transformers (use_safetensors=True)
# reads model.safetensors or the shards its index names; peft reads
# adapter_model.safetensors, and falls back to torch.load of adapter_model.bin when that
# is missing, whatever other *.safetensors the folder holds.
WEIGHTS = {"model": ("model.safetensors", "model.safetensors.index.json"),
           "adapter": ("adapter_model.safetensors",)}
# Pickles the Trainer writes into every checkpoint and reads back on resume (torch.load,
# weights_only=True): trusted only inside the run that wrote them (require_checkpoint).
TRAINER_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state")
# Not weights and never loaded by the studio or the libraries it calls: the Trainer
# saves its arguments beside every final/ and checkpoint for people to inspect.
NOT_LOADED = ("training_args.bin",)


def pickle_files(folder: Path) -> list[str]:
    """Pickle-format files in a folder and its direct subfolders (peft keeps extra
    adapters there); no deeper, so a model folder that is also someone's home is cheap."""
    found = []
    for path in sorted([*folder.glob("*"), *folder.glob("*/*")]):
        if path.is_file() and path.name.lower().endswith(PICKLE_SUFFIXES) and path.name not in NOT_LOADED:
            found.append(str(path.relative_to(folder)))
    return found


def _shards(folder: Path, index_name: str) -> list[str]:
    try:
        index = json.loads((folder / index_name).read_text())
        return sorted(set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ["<unreadable index>"]


def require_safetensors(folder: str | Path, kind: str = "model", field: str = "model.name_or_path",
                        trusted_state: bool = False) -> None:
    """The one rule for every weight the studio loads: the files the loader will open
    are safetensors, and no pickle-format weight file sits beside them (a decoy
    x.safetensors does not make adapter_model.bin safe). `kind`: model, adapter or
    checkpoint; `trusted_state`: a checkpoint the current run wrote itself, whose trainer
    state pickles (optimizer, scheduler, RNG) may be read back."""
    folder = Path(folder)
    pickles = pickle_files(folder)
    if kind == "checkpoint":
        if trusted_state:
            pickles = [p for p in pickles if not Path(p).name.startswith(TRAINER_STATE)]
        kind = "adapter" if (folder / "adapter_config.json").is_file() else "model"
    what = "adapter" if kind == "adapter" else "model"
    if pickles:
        raise ValueError(f"{field}: '{folder}' holds pickle-format files ({', '.join(pickles)}), which can run code "
                         f"when loaded; the studio loads safetensors only. Re-save the {what} with "
                         "save_pretrained(..., safe_serialization=True) into a folder without them")
    names = WEIGHTS[kind]
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        raise ValueError(f"{field}: '{folder}' has no {' or '.join(names)}; point at a saved {what} "
                         "(save_pretrained writes it)")
    if present[0].endswith(".index.json"):
        bad = [s for s in _shards(folder, present[0]) if not s.endswith(".safetensors") or not (folder / s).is_file()]
        if bad:
            raise ValueError(f"{field}: '{folder}/{present[0]}' names missing or non-safetensors shards "
                             f"({', '.join(bad[:5])})")


def require_checkpoint(checkpoint: str | Path, run_dir: str | Path, field: str = "train.resume_from") -> None:
    """A checkpoint to resume from. Its weights follow require_safetensors; its trainer
    state pickles are read only when the checkpoint lies inside the run being trained
    (the studio's own worker wrote it there: `studio runs resume` resumes in place). A
    checkpoint from anywhere else that holds pickles is refused."""
    checkpoint, run_dir = Path(checkpoint).resolve(), Path(run_dir).resolve()
    own = checkpoint.is_relative_to(run_dir / "checkpoints")
    try:
        require_safetensors(checkpoint, "checkpoint", field, trusted_state=own)
    except ValueError as exc:
        if own:
            raise
        raise ValueError(f"{exc}. A checkpoint from outside this run is resumed only without pickled "
                         "optimizer/scheduler/RNG state: start from its weights with model.name_or_path instead") from None


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

    from studio import policy

    policy.check_remote_code(model_spec.trust_remote_code)
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
    if getattr(method_spec, "quant_bits", 4) == 8:  # LoRA on a bitsandbytes int8 base (#19)
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=method_spec.quant_type,
        bnb_4bit_use_double_quant=method_spec.double_quant,
        bnb_4bit_compute_dtype=chosen or torch.float32)


def _from_pretrained(where: str, model_spec, quant, dtype, device):
    from transformers import AutoModelForCausalLM

    from studio import policy

    policy.check_remote_code(model_spec.trust_remote_code)  # a hosted worker re-checks the app's refusal
    kwargs = dict(use_safetensors=True, trust_remote_code=model_spec.trust_remote_code)
    if getattr(model_spec, "rope_scaling", None):
        kwargs["config"] = rope_scaled_config(where, model_spec)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device})
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype or "auto", **kwargs)
    if quant is None:
        return model.to(device)
    if device == "cpu":
        _avoid_cpu_packing_crash(model)
    return model


def rope_scaled_config(where: str, model_spec):
    """The model's config with model.rope_scaling applied (studio.estimate.rope: the same
    rope_parameters and context the estimate reads); a family without rotary positions
    refused, naming the field."""
    from transformers import AutoConfig

    from studio.estimate.rope import family_problem, scaled_config

    config = AutoConfig.from_pretrained(where, trust_remote_code=model_spec.trust_remote_code)
    as_dict = config.to_dict()
    why = family_problem(as_dict, model_spec.rope_scaling)
    if why:
        raise ValueError(f"model.rope_scaling: {why}")
    scaled = scaled_config(as_dict, model_spec)
    config.rope_parameters = scaled["rope_parameters"]
    config.max_position_embeddings = scaled["max_position_embeddings"]
    config.validate_rope()
    print(f"Rope scaling: {model_spec.rope_scaling} x{model_spec.rope_factor:g}, context "
          f"{as_dict.get('max_position_embeddings')} -> {config.max_position_embeddings} tokens", flush=True)
    return config


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
    from studio.model.adapters import fit_base_to_adapter

    fit_base_to_adapter(base, where)
    model = PeftModel.from_pretrained(base, where, is_trainable=keep_adapter and method_spec is not None)
    # Another regime starts from the merged weights (a 4-bit base cannot be merged into).
    return model if keep_adapter or qlora else model.merge_and_unload()
