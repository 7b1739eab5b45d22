"""What a model costs before anything is built: parameters, memory, FLOPs, time.

Pure arithmetic on a ModelSpec or a config.json dict; no torch import at module level
(the UI calls this on every keystroke). The parameter count is exact because it is
derived from a table of the model's named parameters and linear modules, written out
per architecture (the studio's own model, the Llama family, GPT-2, Phi): the same
names the built model has, so freeze rules and LoRA/IA3 targets are matched against
them exactly as studio.model.adapters and peft match them on the real model.

Conventions (what a real training step holds; see tests/test_estimate.py):
- weights: every parameter in its storage dtype. bf16/fp16 training is mixed precision
  as the studio's worker runs it: trained weights stay fp32 under autocast, a frozen base
  under adapters sits in half precision (mixed_precision=False: all in the dtype).
  QLoRA: bitsandbytes 4-bit packing with its quantisation state, other parameters in
  fp32 (prepare_model_for_kbit_training).
- adapters (LoRA, DoRA, IA3, prefix, prompt) are fp32, as peft keeps them.
- gradients: one per trainable parameter, in that parameter's dtype.
- optimizer: adamw = torch AdamW (2 states + a 4-byte step tensor per parameter);
  adamw_8bit = bitsandbytes AdamW8bit as the transformers Trainer sets it up (embeddings
  and tensors under 4096 elements keep 32-bit states); adafactor = transformers' Adafactor
  (factored fp32 second moment, no first moment); lion = bitsandbytes Lion (one fp32
  state); sophia = studio.optim's Sophia (two states); muon = torch Muon on 2-D hidden
  matrices (one state) and AdamW for embeddings, head, norms and biases.
- activations: the extra memory one forward+backward needs on top of the above, for
  scaled-dot-product attention (no seq x seq matrix kept); calibrated against a
  tensor-allocation tracker on CPU (bench/estimate_memory.py).
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from studio.spec import comma_list

DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}
GIB = 1024**3
BLOCK_INDEX = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")
REPO_ROOT = Path(__file__).resolve().parent.parent
PRESET_DIR = REPO_ROOT / "presets" / "models"

# IA3 (peft's own defaults for these families; the studio model uses Llama's names).
IA3_TARGETS = {
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "studio": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen3": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma2": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma3_text": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "phi": (["q_proj", "v_proj", "fc2"], ["fc2"]),
    "phi3": (["qkv_proj", "down_proj"], ["down_proj"]),
}


class EstimateError(ValueError):
    """Input the estimator cannot read; the message names the field and the fix."""


# -- which architecture a spec becomes -------------------------------------------


def architecture_of(model_spec) -> str:
    """"llama" | "mistral" | "studio" for a scratch spec; a pretrained spec gives the
    model_type of its config.json when that can be read locally."""
    if getattr(model_spec, "source", "scratch") == "pretrained":
        try:
            return read_config(model_spec.name_or_path).get("model_type", "pretrained")
        except EstimateError:
            return "pretrained"
    standard = (model_spec.positional_encoding in ("rope", "yarn") and model_spec.norm == "rmsnorm"
                and model_spec.activation == "swiglu")
    if not standard:
        return "studio"
    if model_spec.sliding_window is None:
        return "llama"
    # Mistral has no attention biases; with them the studio's model keeps both options.
    return "studio" if model_spec.attention_bias else "mistral"


def spec_config(model_spec, vocab_size: int | None = None) -> dict:
    """The config dict (transformers field names, with model_type) a scratch spec builds.
    studio.model.build turns it into the PretrainedConfig, so both read the same numbers."""
    m = model_spec
    arch = architecture_of(m)
    vocab = m.vocab_size or vocab_size or tokenizer_vocab_size(m.tokenizer)
    kv = {"mha": m.n_heads, "mqa": 1}.get(m.attention, m.n_kv_heads)
    max_pos = m.max_seq_len
    rope = {"rope_type": "default", "rope_theta": float(m.rope_theta)}
    if m.positional_encoding == "yarn":
        factor = float(m.yarn_factor or 1.0)
        rope = {"rope_type": "yarn", "rope_theta": float(m.rope_theta), "factor": factor,
                "original_max_position_embeddings": m.max_seq_len}
        max_pos = int(round(m.max_seq_len * factor))
    cfg = {
        "model_type": arch, "vocab_size": int(vocab), "hidden_size": m.d_model,
        "intermediate_size": m.d_ff, "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads, "num_key_value_heads": kv,
        "head_dim": m.d_model // m.n_heads, "max_position_embeddings": max_pos,
        "tie_word_embeddings": m.tie_embeddings, "rope_parameters": rope,
    }
    if arch in ("llama", "mistral"):
        cfg.update(hidden_act="silu", rms_norm_eps=m.norm_eps, attention_dropout=m.dropout)
        if arch == "llama":
            cfg.update(attention_bias=m.attention_bias, mlp_bias=False)
        else:
            cfg.update(sliding_window=m.sliding_window)
    else:
        cfg.update(hidden_act=m.activation, norm_type=m.norm, norm_eps=m.norm_eps,
                   position_embedding=m.positional_encoding, sliding_window=m.sliding_window,
                   attention_bias=m.attention_bias, dropout=m.dropout)
    return cfg


def tokenizer_vocab_size(path: str) -> int:
    """len(tokenizer) read from tokenizer.json (base vocab plus added tokens), no load."""
    folder = _resolve_path(path)
    file = folder / "tokenizer.json" if folder is not None else None
    if file is None or not file.is_file():
        raise EstimateError(f"model.tokenizer: cannot read the vocabulary of '{path}' here; "
                            "set model.vocab_size, or give a tokenizer folder with tokenizer.json")
    data = json.loads(file.read_text())
    ids = set((data.get("model", {}).get("vocab") or {}).values())
    ids |= {t["id"] for t in data.get("added_tokens", [])}
    return len(ids)


# -- the parameter table ------------------------------------------------------------


@dataclass
class Inventory:
    """Named parameters (as model.named_parameters() lists them, shared ones once) and
    the linear/embedding modules adapters attach to."""
    model_type: str
    params: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)  # name, shape, component
    linears: list[tuple[str, int, int]] = field(default_factory=list)  # module, in, out
    embeddings: list[tuple[str, int, int]] = field(default_factory=list)  # module, rows, dim
    output_module: str = "lm_head"
    info: dict = field(default_factory=dict)

    def linear(self, name, n_in, n_out, bias, component, conv1d=False):
        self.linears.append((name, n_in, n_out))
        self.params.append((f"{name}.weight", (n_in, n_out) if conv1d else (n_out, n_in), component))
        if bias:
            self.params.append((f"{name}.bias", (n_out,), component))

    def norm(self, name, size, bias):
        self.params.append((f"{name}.weight", (size,), "norm"))
        if bias:
            self.params.append((f"{name}.bias", (size,), "norm"))

    def embedding(self, name, rows, dim, component="embedding"):
        self.embeddings.append((name, rows, dim))
        self.params.append((f"{name}.weight", (rows, dim), component))


def _numel(shape) -> int:
    return math.prod(shape)


def _get(c: dict, key: str, default):
    value = c.get(key)
    return default if value is None else value


def inventory(thing, vocab_size: int | None = None) -> Inventory:
    """The parameter table of a ModelSpec, a config dict or a PretrainedConfig."""
    c = as_config(thing, vocab_size)
    kind = c.get("model_type", "")
    if kind in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "studio"):
        return _llama_like(c)
    if kind == "gpt2":
        return _gpt2(c)
    if kind == "phi":
        return _phi(c)
    if kind == "phi3":
        return _phi3(c)
    return _meta_inventory(c)


def as_config(thing, vocab_size: int | None = None) -> dict:
    if isinstance(thing, dict):
        return thing
    if hasattr(thing, "positional_encoding"):  # a ModelSpec
        if thing.source == "pretrained":
            return read_config(thing.name_or_path)
        return spec_config(thing, vocab_size)
    if hasattr(thing, "to_dict"):  # a transformers PretrainedConfig
        return thing.to_dict()
    raise EstimateError(f"cannot estimate a {type(thing).__name__}: give a ModelSpec or a config.json dict")


_TIED_DEFAULT = {"gemma": True, "gemma2": True, "gemma3_text": True, "gpt2": True, "studio": True}


def _llama_like(c: dict) -> Inventory:
    kind = c["model_type"]
    H, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    nh = c["num_attention_heads"]
    nkv = _get(c, "num_key_value_heads", nh)
    default_hd = 256 if kind.startswith("gemma") else 128 if kind == "qwen3" else H // nh
    hd = _get(c, "head_dim", default_hd)
    I = c["intermediate_size"]
    tied = _get(c, "tie_word_embeddings", _TIED_DEFAULT.get(kind, False))
    bias = bool(_get(c, "attention_bias", False))
    qkv_bias, o_bias = {"qwen2": (True, False), "mistral": (False, False)}.get(kind, (bias, bias))
    mlp_bias = bool(_get(c, "mlp_bias", False)) if kind == "llama" else False
    gated = kind != "studio" or c.get("hidden_act") == "swiglu"
    norm_bias = kind == "studio" and c.get("norm_type", "layernorm") == "layernorm"
    norms = ["input_layernorm", "post_attention_layernorm"]
    if kind in ("gemma2", "gemma3_text"):
        norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    qk_norm = kind in ("qwen3", "gemma3_text")

    inv = Inventory(kind, info=dict(hidden=H, layers=L, heads=nh, kv_heads=nkv, head_dim=hd, ffn=I,
                                    vocab=V, tied=tied, gated=gated,
                                    position=c.get("position_embedding", "rope"),
                                    norm="layernorm" if norm_bias else "rmsnorm",
                                    sliding_window=c.get("sliding_window") if kind in ("mistral", "studio") else None,
                                    max_position=c.get("max_position_embeddings"),
                                    act=c.get("hidden_act"),
                                    dropout=_get(c, "dropout", _get(c, "attention_dropout", 0.0))))
    inv.embedding("model.embed_tokens", V, H)
    for i in range(L):
        p = f"model.layers.{i}"
        # Registration order of the modules does not change the count; names are exact.
        inv.linear(f"{p}.self_attn.q_proj", H, nh * hd, qkv_bias, "attention")
        inv.linear(f"{p}.self_attn.k_proj", H, nkv * hd, qkv_bias, "attention")
        inv.linear(f"{p}.self_attn.v_proj", H, nkv * hd, qkv_bias, "attention")
        inv.linear(f"{p}.self_attn.o_proj", nh * hd, H, o_bias, "attention")
        if qk_norm:
            inv.norm(f"{p}.self_attn.q_norm", hd, False)
            inv.norm(f"{p}.self_attn.k_norm", hd, False)
        if gated:
            inv.linear(f"{p}.mlp.gate_proj", H, I, mlp_bias, "mlp")
        inv.linear(f"{p}.mlp.up_proj", H, I, mlp_bias, "mlp")
        inv.linear(f"{p}.mlp.down_proj", I, H, mlp_bias, "mlp")
        for n in norms:
            inv.norm(f"{p}.{n}", H, norm_bias)
    inv.norm("model.norm", H, norm_bias)
    _lm_head(inv, H, V, tied, bias=False)
    return inv


def _lm_head(inv: Inventory, H: int, V: int, tied: bool, bias: bool):
    inv.linears.append(("lm_head", H, V))
    if not tied:
        inv.params.append(("lm_head.weight", (V, H), "lm_head"))
    if bias:
        inv.params.append(("lm_head.bias", (V,), "lm_head"))


def _gpt2(c: dict) -> Inventory:
    H, L, V = c["n_embd"], c["n_layer"], c["vocab_size"]
    inner = _get(c, "n_inner", 4 * H)
    tied = _get(c, "tie_word_embeddings", True)
    inv = Inventory("gpt2", info=dict(hidden=H, layers=L, heads=c["n_head"], kv_heads=c["n_head"],
                                      head_dim=H // c["n_head"], ffn=inner, vocab=V, tied=tied, gated=False,
                                      position="learned", norm="layernorm", sliding_window=None,
                                      max_position=c.get("n_positions"), act="gelu",
                                      dropout=_get(c, "attn_pdrop", 0.1)))
    inv.embedding("transformer.wte", V, H)
    inv.embedding("transformer.wpe", c["n_positions"], H, component="position_embedding")
    for i in range(L):
        p = f"transformer.h.{i}"
        inv.norm(f"{p}.ln_1", H, True)
        inv.linear(f"{p}.attn.c_attn", H, 3 * H, True, "attention", conv1d=True)
        inv.linear(f"{p}.attn.c_proj", H, H, True, "attention", conv1d=True)
        inv.norm(f"{p}.ln_2", H, True)
        inv.linear(f"{p}.mlp.c_fc", H, inner, True, "mlp", conv1d=True)
        inv.linear(f"{p}.mlp.c_proj", inner, H, True, "mlp", conv1d=True)
    inv.norm("transformer.ln_f", H, True)
    _lm_head(inv, H, V, tied, bias=False)
    return inv


def _phi(c: dict) -> Inventory:
    H, L, V, I = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"], c["intermediate_size"]
    nh = c["num_attention_heads"]
    nkv = _get(c, "num_key_value_heads", nh)
    hd = H // nh
    tied = _get(c, "tie_word_embeddings", False)
    inv = Inventory("phi", info=dict(hidden=H, layers=L, heads=nh, kv_heads=nkv, head_dim=hd, ffn=I, vocab=V,
                                     tied=tied, gated=False, position="rope", norm="layernorm",
                                     sliding_window=None, max_position=c.get("max_position_embeddings"),
                                     act="gelu", dropout=_get(c, "attention_dropout", 0.0)))
    inv.embedding("model.embed_tokens", V, H)
    for i in range(L):
        p = f"model.layers.{i}"
        inv.linear(f"{p}.self_attn.q_proj", H, nh * hd, True, "attention")
        inv.linear(f"{p}.self_attn.k_proj", H, nkv * hd, True, "attention")
        inv.linear(f"{p}.self_attn.v_proj", H, nkv * hd, True, "attention")
        inv.linear(f"{p}.self_attn.dense", nh * hd, H, True, "attention")
        if c.get("qk_layernorm"):
            inv.norm(f"{p}.self_attn.q_layernorm", hd, True)
            inv.norm(f"{p}.self_attn.k_layernorm", hd, True)
        inv.linear(f"{p}.mlp.fc1", H, I, True, "mlp")
        inv.linear(f"{p}.mlp.fc2", I, H, True, "mlp")
        inv.norm(f"{p}.input_layernorm", H, True)
    inv.norm("model.final_layernorm", H, True)
    _lm_head(inv, H, V, tied, bias=True)
    return inv


def _phi3(c: dict) -> Inventory:
    H, L, V, I = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"], c["intermediate_size"]
    nh = c["num_attention_heads"]
    nkv = _get(c, "num_key_value_heads", nh)
    hd = H // nh
    tied = _get(c, "tie_word_embeddings", False)
    inv = Inventory("phi3", info=dict(hidden=H, layers=L, heads=nh, kv_heads=nkv, head_dim=hd, ffn=I, vocab=V,
                                      tied=tied, gated=True, position="rope", norm="rmsnorm",
                                      sliding_window=c.get("sliding_window"),
                                      max_position=c.get("max_position_embeddings")))
    inv.embedding("model.embed_tokens", V, H)
    for i in range(L):
        p = f"model.layers.{i}"
        inv.linear(f"{p}.self_attn.o_proj", nh * hd, H, False, "attention")
        inv.linear(f"{p}.self_attn.qkv_proj", H, (nh + 2 * nkv) * hd, False, "attention")
        inv.linear(f"{p}.mlp.gate_up_proj", H, 2 * I, False, "mlp")
        inv.linear(f"{p}.mlp.down_proj", I, H, False, "mlp")
        inv.norm(f"{p}.input_layernorm", H, False)
        inv.norm(f"{p}.post_attention_layernorm", H, False)
    inv.norm("model.norm", H, False)
    _lm_head(inv, H, V, tied, bias=False)
    return inv


def _meta_inventory(c: dict) -> Inventory:
    """Any other architecture: build it on the meta device (no memory, no weights) and
    read its table. Needs torch/transformers, so only for families not written out above."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as exc:  # pragma: no cover - the studio always ships them
        raise EstimateError(f"model_type '{c.get('model_type')}' needs transformers to count") from exc
    cfg = dict(c)
    kind = cfg.pop("model_type", None)
    if not kind:
        raise EstimateError("config.json has no model_type: cannot tell which architecture it is")
    config = AutoConfig.for_model(kind, **cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    inv = Inventory(kind)
    for name, p in model.named_parameters():
        comp = "embedding" if "embed" in name else "lm_head" if "lm_head" in name else "other"
        inv.params.append((name, tuple(p.shape), comp))
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            inv.linears.append((name, mod.in_features, mod.out_features))
        elif isinstance(mod, torch.nn.Embedding):
            inv.embeddings.append((name, mod.num_embeddings, mod.embedding_dim))
    out = model.get_output_embeddings()
    inv.output_module = next((n for n, m in model.named_modules() if m is out), "lm_head")
    tc = config.get_text_config()
    hidden = getattr(tc, "hidden_size", 0)
    heads = getattr(tc, "num_attention_heads", 1)
    inv.info = dict(hidden=hidden, layers=getattr(tc, "num_hidden_layers", 0), heads=heads,
                    kv_heads=getattr(tc, "num_key_value_heads", heads) or heads,
                    head_dim=getattr(tc, "head_dim", None) or hidden // max(heads, 1),
                    ffn=getattr(tc, "intermediate_size", 4 * hidden), vocab=getattr(tc, "vocab_size", 0),
                    tied=bool(getattr(tc, "tie_word_embeddings", False)), gated=True, position="rope",
                    norm="rmsnorm", sliding_window=getattr(tc, "sliding_window", None),
                    max_position=getattr(tc, "max_position_embeddings", None))
    return inv


# -- parameter counts -------------------------------------------------------------


def count_parameters(thing, vocab_size: int | None = None) -> dict:
    """total / embedding / non_embedding / per component; equal to sum(p.numel()) of the
    built model. "embedding" holds the token and position embeddings and an untied
    output head (the vocabulary-sized matrices)."""
    inv = thing if isinstance(thing, Inventory) else inventory(thing, vocab_size)
    components: dict[str, int] = {}
    for _, shape, comp in inv.params:
        components[comp] = components.get(comp, 0) + _numel(shape)
    total = sum(components.values())
    embedding = sum(components.get(k, 0) for k in ("embedding", "position_embedding", "lm_head"))
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding,
            "components": components, "model_type": inv.model_type}


def freeze_trains(name: str, n_layers: int, last_n: int, extra: str) -> bool:
    """The freeze regime's rule (studio.model.adapters applies the same function): a
    parameter trains when it sits in one of the last `last_n` blocks or its name holds
    one of the comma-separated fragments in `extra`."""
    match = BLOCK_INDEX.search(name)
    if match and int(match.group(1)) >= n_layers - last_n:
        return True
    return any(frag in name for frag in comma_list(extra))


def lora_targets(inv: Inventory, target_modules: str) -> list[tuple[str, int, int]]:
    """Linear (and embedding) modules peft's LoRA attaches to, matched like peft does:
    "all-linear" = every linear but the output head; names match whole or as a suffix."""
    if target_modules.strip().lower() == "all-linear":
        return [m for m in inv.linears if m[0] != inv.output_module]
    wanted = comma_list(target_modules)
    hit = lambda name: any(name == t or name.endswith("." + t) for t in wanted)  # noqa: E731
    return [m for m in inv.linears + inv.embeddings if hit(m[0])]


def ia3_targets(model_type: str) -> tuple[list[str], list[str]]:
    return IA3_TARGETS.get(model_type, IA3_TARGETS["llama"])


def trainable_tensors(inv: Inventory, method_spec) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, is_adapter) of every tensor with requires_grad after apply_regime."""
    regime = getattr(method_spec, "regime", "full") if method_spec is not None else "full"
    info = inv.info
    if regime == "full":
        return [(n, s, False) for n, s, _ in inv.params]
    if regime == "freeze":
        return [(n, s, False) for n, s, _ in inv.params
                if freeze_trains(n, info["layers"], method_spec.freeze_trainable_layers,
                                 method_spec.freeze_extra_modules)]
    if regime in ("lora", "dora", "qlora"):
        r = method_spec.lora_r
        out = []
        embedding_names = {e[0] for e in inv.embeddings}
        for name, n_in, n_out in lora_targets(inv, method_spec.target_modules):
            if name in embedding_names:  # peft: lora_embedding_A (r, rows), B (dim, r)
                out += [(f"{name}.lora_embedding_A", (r, n_in), True), (f"{name}.lora_embedding_B", (n_out, r), True)]
                continue
            out += [(f"{name}.lora_A", (r, n_in), True), (f"{name}.lora_B", (n_out, r), True)]
            if regime == "dora":
                out.append((f"{name}.lora_magnitude_vector", (n_out,), True))
        return out
    if regime == "prefix":
        # peft sizes the prefix by the K/V width (GQA aware) when the config names kv heads.
        width = info["kv_heads"] * info["head_dim"] if inv.model_type != "gpt2" else info["hidden"]
        return [("prefix_encoder.embedding", (method_spec.num_virtual_tokens, info["layers"] * 2 * width), True)]
    if regime == "prompt":
        return [("prompt_encoder.embedding", (method_spec.num_virtual_tokens, info["hidden"]), True)]
    if regime == "ia3":
        targets, feedforward = ia3_targets(inv.model_type)
        hit = lambda name, ts: any(name == t or name.endswith("." + t) for t in ts)  # noqa: E731
        return [(f"{name}.ia3_l", (1, n_in) if hit(name, feedforward) else (n_out, 1), True)
                for name, n_in, n_out in inv.linears if hit(name, targets)]
    raise EstimateError(f"method.regime: '{regime}' is not a parameter regime")


def trainable_parameters(thing, method_spec=None, vocab_size: int | None = None) -> int:
    """Number of parameters with requires_grad after apply_regime(model, method_spec)."""
    inv = thing if isinstance(thing, Inventory) else inventory(thing, vocab_size)
    return sum(_numel(s) for _, s, _ in trainable_tensors(inv, method_spec))


# -- reading sources ------------------------------------------------------------------


def _resolve_path(path: str) -> Path | None:
    if not path:
        return None
    for candidate in (Path(path).expanduser(), REPO_ROOT / path):
        if candidate.exists():
            return candidate
    return None


def read_config(name_or_path: str) -> dict:
    """config.json of a model folder, a run directory (its final/), an adapter folder (its
    base's), a config.json file, or a hub id already in the local cache. Never downloads."""
    found = _resolve_path(name_or_path)
    if found is not None and found.is_file():
        return json.loads(found.read_text())
    if found is not None:
        for folder in (found, found / "final"):
            if (folder / "config.json").is_file():
                return json.loads((folder / "config.json").read_text())
            if (folder / "adapter_config.json").is_file():
                base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
                if base:
                    return read_config(base)
        raise EstimateError(f"model.name_or_path: no config.json in '{name_or_path}' (nor in its final/)")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid repo id
        cached = None
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text())
    raise EstimateError(f"model.name_or_path: '{name_or_path}' is not a local folder and its config is not in "
                        "the local hub cache; download the model once, or give a folder")


# -- memory ---------------------------------------------------------------------------

OPTIMIZERS = ("adamw", "adamw_8bit", "adafactor", "lion", "sophia", "muon")


def _resolve_dtype(dtype, train_spec) -> str:
    """Storage dtype of the weights: explicit, else train.precision; "auto" means fp32
    (the CPU worker's choice; the UI passes bf16 for a GPU that has it)."""
    chosen = dtype or (getattr(train_spec, "precision", "auto") if train_spec is not None else "auto")
    chosen = "fp32" if chosen in (None, "auto") else chosen
    if chosen not in DTYPE_BYTES:
        raise EstimateError(f"train.precision: '{chosen}' is not one of fp32, bf16, fp16")
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(chosen, chosen)


def quantized_linear_bytes(n_in: int, n_out: int, double_quant: bool = True, blocksize: int = 64) -> int:
    """bitsandbytes 4-bit (nf4/fp4) weight: packed nibbles plus its QuantState tensors."""
    n = n_in * n_out
    blocks = -(-n // blocksize)
    packed = -(-n // 2)
    code = 16 * 4
    if double_quant:  # absmax as uint8 + offset + a nested fp32 absmax per 256 blocks + its 256-entry code
        return packed + blocks + 4 + (-(-blocks // 256)) * 4 + 256 * 4 + code
    return packed + blocks * 4 + code


def weight_bytes(inv: Inventory, regime: str, dtype: str, double_quant: bool = True) -> int:
    if regime != "qlora":
        return sum(_numel(s) for _, s, _ in inv.params) * DTYPE_BYTES[dtype]
    quantized = {name for name, _, _ in inv.linears if name != inv.output_module}
    total = 0
    for name, n_in, n_out in inv.linears:
        if name in quantized:
            total += quantized_linear_bytes(n_in, n_out, double_quant)
    # Everything not quantised (embeddings, norms, biases, the head) is fp32 after
    # peft's prepare_model_for_kbit_training.
    for name, shape, _ in inv.params:
        if not (name.endswith(".weight") and name[: -len(".weight")] in quantized):
            total += _numel(shape) * 4
    return total


def optimizer_bytes(optimizer: str, tensors: list[tuple[str, tuple[int, ...], int]], embedding_names=()) -> int:
    """State bytes after the first step; tensors: (name, shape, bytes per element)."""
    total = 0
    qmaps = False
    for name, shape, elem in tensors:
        n = _numel(shape)
        if optimizer == "adamw":
            total += 2 * n * elem + 4  # exp_avg, exp_avg_sq (param dtype) + fp32 step tensor
        elif optimizer == "adamw_8bit":
            is_embedding = any(name == f"{e}.weight" for e in embedding_names)
            if is_embedding or n < 4096:  # the Trainer keeps embeddings 32-bit; bnb small tensors too
                total += 2 * n * 4
            else:
                total += 2 * n + 2 * 4 * (-(-n // 256))  # uint8 states + fp32 absmax per 256-block
                qmaps = True
        elif optimizer == "adafactor":
            if len(shape) >= 2:
                rows, cols = _numel(shape[:-1]), _numel(shape[:-2]) * shape[-1]
                total += (rows + cols) * 4 + 4  # factored second moment + RMS scalar
            else:
                total += n * 4 + 4
        elif optimizer == "lion":
            total += n * 4
        elif optimizer == "sophia":
            total += 2 * n * elem  # exp_avg, hessian estimate (studio.optim.Sophia)
        elif optimizer == "muon":
            # studio.optim.split_for_muon: 2-D matrices but embeddings and the head go to Muon
            is_embedding = any(name == f"{e}.weight" for e in embedding_names)
            to_muon = len(shape) == 2 and not is_embedding and "lm_head" not in name and "embed" not in name
            total += n * elem if to_muon else 2 * n * elem + 4
        else:
            raise EstimateError(f"train.optimizer: '{optimizer}' is not one of {', '.join(OPTIMIZERS)}")
    return total + (2 * 256 * 4 if qmaps else 0)  # bnb's two shared quantile maps


def kv_cache_bytes(inv: Inventory, batch: int, seq_len: int, dtype: str) -> int:
    """Inference KV cache: keys and values for every layer (a sliding window caps it)."""
    info = inv.info
    window = info.get("sliding_window")
    kept = min(seq_len, window) if window else seq_len
    return 2 * info["layers"] * info["kv_heads"] * info["head_dim"] * kept * batch * DTYPE_BYTES[dtype]


def _sections(thing, method_spec, train_spec):
    """(model part, method, train) from a RunSpec or from the three sections."""
    if hasattr(thing, "model") and hasattr(thing, "train") and hasattr(thing, "method"):
        return thing.model, method_spec or thing.method, train_spec or thing.train
    return thing, method_spec, train_spec


def _checkpointing(train_spec, override) -> bool:
    if override is not None:
        return bool(override)
    return getattr(train_spec, "gradient_checkpointing", "off") == "on"


def estimate_memory(thing, method_spec=None, train_spec=None, device_memory_gb: float | None = None, *,
                    vocab_size: int | None = None, seq_len: int | None = None, batch_size: int | None = None,
                    dtype: str | None = None, optimizer: str | None = None,
                    gradient_checkpointing: bool | None = None, padded: bool = True,
                    mixed_precision: bool = True) -> dict:
    """Bytes a training step holds: weights, gradients, optimizer states, activations
    (total = their sum), plus the inference KV cache (same batch and length) and, given
    device_memory_gb (GiB), a fits verdict.

    `thing`: a RunSpec, or a ModelSpec / config dict / PretrainedConfig / Inventory with
    method_spec and train_spec. dtype: the training precision (default train.precision;
    "auto" = fp32). With mixed_precision (the studio worker's way) bf16/fp16 training keeps
    trainable weights in fp32 and autocasts, while a frozen base under adapters is stored
    in half precision; mixed_precision=False stores every weight in dtype.
    seq_len defaults to the ModelSpec's max_seq_len (a config: max_position_embeddings,
    at most 2048); batch_size to train.batch_size (one step's micro-batch);
    train.gradient_checkpointing "auto" counts as off. padded: batches carry padding, so
    attention needs a mask (what trainers do)."""
    model_part, method_spec, train_spec = _sections(thing, method_spec, train_spec)
    inv = model_part if isinstance(model_part, Inventory) else inventory(model_part, vocab_size)
    regime = getattr(method_spec, "regime", "full") if method_spec is not None else "full"
    compute = _resolve_dtype(dtype, train_spec)
    mixed = mixed_precision and compute != "fp32"
    storage = "fp32" if mixed and regime in ("full", "freeze") else compute
    opt_name = optimizer or getattr(train_spec, "optimizer", None) or "adamw"
    batch = batch_size or getattr(train_spec, "batch_size", None) or 1
    seq = seq_len or getattr(model_part, "max_seq_len", None) or min(inv.info.get("max_position") or 2048, 2048)
    ckpt = _checkpointing(train_spec, gradient_checkpointing)

    tensors = trainable_tensors(inv, method_spec)
    # peft keeps adapters in fp32; QLoRA's other trainable weights are fp32 after prepare_model_for_kbit_training
    elem = lambda adapter: 4 if adapter or regime == "qlora" else DTYPE_BYTES[storage]  # noqa: E731
    adapters = sum(_numel(s) for _, s, a in tensors if a)
    weights = weight_bytes(inv, regime, storage, getattr(method_spec, "double_quant", True)) + adapters * 4
    gradients = sum(_numel(s) * elem(a) for _, s, a in tensors)
    opt = optimizer_bytes(opt_name, [(n, s, elem(a)) for n, s, a in tensors], [e[0] for e in inv.embeddings])
    acts = activation_bytes(inv, method_spec, batch, seq, compute, ckpt, padded, autocast=mixed)
    total = weights + gradients + opt + acts
    result = {
        "weights": weights, "gradients": gradients, "optimizer": opt, "activations": acts, "total": total,
        "kv_cache": kv_cache_bytes(inv, batch, seq, "fp32" if regime == "qlora" and not mixed else compute),
        "settings": {"dtype": compute, "weights_dtype": storage, "mixed_precision": mixed, "regime": regime,
                     "optimizer": opt_name, "batch_size": batch, "seq_len": seq,
                     "gradient_checkpointing": ckpt, "padded": padded},
    }
    if device_memory_gb is not None:
        capacity = int(device_memory_gb * GIB)
        result.update(device_memory_bytes=capacity, fits=total <= capacity, headroom_bytes=capacity - total)
    return result


# -- activations -------------------------------------------------------------------------
#
# Per-token element counts of what autograd keeps, measured with a tensor-allocation
# tracker on CPU (bench/estimate_memory.py) for torch's scaled-dot-product attention:
#   a block keeps ~8H (RMSNorm) or ~6H (LayerNorm) for norms, residuals, Q and the
#   attention output, 2 x kv width for K and V, and 4I (SwiGLU), 2I (GELU/SiLU/leaky) or
#   1I (ReLU) in the MLP, plus one fp32 log-sum-exp per head. transformers' attention
#   repeats K/V to full width and keeps a (seq x seq) mask per block when a mask is needed
#   (padding, a sliding window). The loss keeps logits, log-softmax and its gradient: 12
#   bytes per vocabulary entry. LoRA adds r per target and, with dropout, ~1.25 x the
#   target's input width (the dropped copy and its mask). Checkpointing keeps each block's
#   input and recomputes one block at a time (its activations plus H + I_mlp/2).

MLP_ELEMENTS = {"swiglu": 4, "relu": 1}


def _mlp_elements(inv: Inventory, act: str | None) -> int:
    if inv.info.get("gated"):
        return 4
    return MLP_ELEMENTS.get(act or "gelu", 2)


def _lora_extra(inv: Inventory, method_spec, layer_index: int = 0) -> tuple[float, int]:
    """(fp32 elements per token, targets) the LoRA branches of one block keep."""
    prefix = f".{layer_index}."
    targets = [m for m in lora_targets(inv, method_spec.target_modules) if prefix in m[0]]
    extra = method_spec.lora_r * len(targets)
    if method_spec.lora_dropout > 0:
        extra += 1.25 * sum(n_in for _, n_in, _ in targets)
    return extra, len(targets)


def activation_bytes(inv: Inventory, method_spec, batch: int, seq: int, dtype: str,
                     checkpointing: bool = False, padded: bool = True, autocast: bool = False) -> int:
    """Peak bytes a forward+backward keeps besides weights, gradients and optimizer
    states: saved activations, attention masks, logits and the loss's buffers.
    dtype: the compute dtype; autocast: half-precision compute over fp32 trainable
    weights (torch.autocast, as the Trainer runs bf16/fp16)."""
    info = inv.info
    H, I, nh, V, L = info["hidden"], info["ffn"], info["heads"], info["vocab"], info["layers"]
    kv = info["kv_heads"] * info["head_dim"]
    regime = getattr(method_spec, "regime", "full") if method_spec is not None else "full"
    act_dtype = dtype
    if regime == "qlora":  # activations run in the 4-bit layers' compute dtype
        chosen = getattr(method_spec, "compute_dtype", "auto")
        act_dtype = dtype if chosen in (None, "auto") else chosen
    e = DTYPE_BYTES[act_dtype]
    studio = inv.model_type == "studio"
    rms = info.get("norm") == "rmsnorm"
    window = info.get("sliding_window")
    tokens = batch * (seq + (method_spec.num_virtual_tokens if regime == "prompt" else 0))
    keys = seq + (method_spec.num_virtual_tokens if regime == "prefix" else 0)

    norm_h = 8 if rms else 6
    if e == 2 and rms and not studio:
        norm_h += 2  # transformers' RMSNorm computes in fp32
    masked = padded or window is not None
    kv_width = 2 * H if masked and not studio else 2 * kv
    layer = e * (norm_h * H + kv_width + _mlp_elements(inv, info.get("act")) * I + 2) + 4 * nh
    if masked and not studio:
        layer += e * min(keys, window or keys)  # the per-block mask
    dropout = info.get("dropout") or 0.0
    if dropout > 0:  # attention dropout leaves the fused kernel and keeps the probabilities
        layer += 13 * nh * min(keys, window or keys)
    frozen = regime not in ("full", "freeze")
    hf_rms = rms and not studio
    if autocast:
        # measured: fp32 copies where autocast runs in fp32 (norms, the residual stream, rotary)
        layer += 4 * (2.5 * H + 2 * kv) if hf_rms else 4 * (4 if frozen else 2) * H
        if regime == "qlora":  # its norms and embeddings are fp32 (prepare_model_for_kbit_training)
            layer += (22 if hf_rms else 16) * H
    if regime in ("lora", "dora", "qlora"):
        extra, _ = _lora_extra(inv, method_spec)
        layer += (e if autocast else 4) * extra - (e * 2 * H if method_spec.lora_dropout == 0 else 0)
    elif frozen:
        layer -= e * 2 * H  # frozen weights need no saved inputs for weight gradients
    layers = L
    if regime == "freeze" and not any("embed" in f for f in comma_list(method_spec.freeze_extra_modules)):
        layers = min(L, method_spec.freeze_trainable_layers)  # no gradient flows below the trained blocks

    loss = 12 * V + (0 if frozen else (10 if autocast else e * 3) * H)  # per token
    # autocast keeps a half-precision copy of each trained linear weight for the backward
    copies = 2 * matmul_parameters(inv) if autocast and not frozen else 0
    # A head tied to a trained embedding: autograd holds the head's share of the shared
    # gradient (V x H) from the head's backward until the embedding's share arrives.
    embedding = f"{inv.embeddings[0][0]}.weight" if inv.embeddings else None
    tied_buffer = 0
    if info.get("tied") and embedding and any(n == embedding for n, _, _ in trainable_tensors(inv, method_spec)):
        tied_buffer = V * H * (4 if autocast else e)
    constant = 0  # masks built once per step (the studio model's)
    if studio:
        heads = nh if info.get("position") == "alibi" else 1
        rows = batch if padded else 1
        if padded or heads > 1 or window is not None:
            constant = rows * heads * seq * keys * e
    if checkpointing:
        recompute = layer + e * (H + _mlp_elements(inv, info.get("act")) * I / 2)
        if frozen and not rms:
            recompute += e * 4 * H  # measured: LayerNorm blocks under adapters keep 4H more while recomputed
        if frozen and autocast:  # measured: a recomputed half-precision block under adapters keeps more
            recompute += (29 if hf_rms else 12) * H
        # The loss is computed inside the autocast forward, whose weight cache still holds
        # every block's half copy; the backward re-casts one block at a time (and the head's stays).
        back_copies = 2 * (V * H + (matmul_parameters(inv) - V * H) / max(L, 1)) if copies else 0
        peak = max(tokens * loss + copies, tokens * recompute + tied_buffer + back_copies)
        return int(tokens * layers * e * H + peak + constant)
    return int(tokens * layers * layer + max(tokens * loss, tied_buffer) + constant + copies)


# -- FLOPs and time ----------------------------------------------------------------------


def matmul_parameters(inv: Inventory) -> int:
    """Weights used in a matrix product per token: every linear, the head included
    (a tied head multiplies by the embedding matrix); lookups cost nothing."""
    return sum(n_in * n_out for _, n_in, n_out in inv.linears)


def flops_per_token(thing, seq_len: int | None = None, method_spec=None, vocab_size: int | None = None,
                    training: bool = True) -> float:
    """Forward = 2 x matmul weights + 4 x layers x seq x attention width (QK^T and AV).
    Training = 3 x forward (6N + 12 L s d); frozen weights skip their weight gradient,
    so adapter/freeze regimes cost about forward + input gradients = 2 x forward."""
    inv = thing if isinstance(thing, Inventory) else inventory(thing, vocab_size)
    info = inv.info
    seq = seq_len or info.get("max_position") or 2048
    window = info.get("sliding_window")
    span = min(seq, window) if window else seq
    forward = 2 * matmul_parameters(inv) + 4 * info["layers"] * span * info["heads"] * info["head_dim"]
    if not training:
        return float(forward)
    regime = getattr(method_spec, "regime", "full") if method_spec is not None else "full"
    return float(3 * forward if regime == "full" else 2 * forward)


def estimate_time(tokens: float, flops_per_token: float, peak_tflops: float, utilisation: float = 0.4) -> dict:
    """Seconds for `tokens` at `utilisation` of `peak_tflops` (model FLOPs utilisation)."""
    if peak_tflops <= 0 or not 0 < utilisation <= 1:
        raise EstimateError("peak_tflops must be positive and utilisation in (0, 1], e.g. 0.4")
    rate = peak_tflops * 1e12 * utilisation / flops_per_token
    return {"tokens_per_second": rate, "seconds": tokens / rate, "hours": tokens / rate / 3600}


# -- one call for the UI and the CLI ----------------------------------------------------


def _report(inv: Inventory, model_part, method_spec, train_spec, device_memory_gb=None, **overrides) -> dict:
    counts = count_parameters(inv)
    memory = estimate_memory(inv if model_part is None else model_part, method_spec, train_spec,
                             device_memory_gb, **overrides)
    return {
        "architecture": architecture_of(model_part) if model_part is not None else inv.model_type,
        "model_type": inv.model_type,
        "parameters": counts["total"], "trainable_parameters": trainable_parameters(inv, method_spec),
        "embedding_parameters": counts["embedding"], "non_embedding_parameters": counts["non_embedding"],
        "components": counts["components"],
        "memory_bytes": {k: memory[k] for k in ("weights", "gradients", "optimizer", "activations", "total")},
        "kv_cache_bytes": memory["kv_cache"], "settings": memory["settings"],
        "flops_per_token": flops_per_token(inv, memory["settings"]["seq_len"], method_spec),
        **{k: memory[k] for k in ("device_memory_bytes", "fits", "headroom_bytes") if k in memory},
    }


def estimate(spec, device_memory_gb: float | None = None, **overrides) -> dict:
    """Everything the Model tab shows for a RunSpec: architecture, parameters (total,
    trainable, per component), the memory breakdown, KV cache, FLOPs per token.
    overrides: estimate_memory's keywords (seq_len, batch_size, dtype, ...)."""
    return _report(inventory(spec.model), spec.model, spec.method, spec.train, device_memory_gb, **overrides)


def load_source(thing: str):
    """(RunSpec, config dict or None, from_run) for: a RunSpec/preset YAML path, a
    config.json path, a model folder, a run directory (its spec.yaml and final/), a preset
    name (presets/models/<name>.yaml) or a hub id in the local cache. Only configs are
    read, never weights."""
    import yaml

    from studio.spec import RunSpec

    path = _resolve_path(thing)
    preset = PRESET_DIR / f"{thing}.yaml"
    if path is None and preset.is_file():
        path = preset
    if path is not None and path.is_file() and path.suffix in (".yaml", ".yml"):
        return RunSpec.from_dict(yaml.safe_load(path.read_text()) or {}), None, False
    if path is not None and path.is_dir() and (path / "spec.yaml").is_file():
        spec = RunSpec.load(path / "spec.yaml")
        try:
            return spec, read_config(str(path)), True  # the trained model, when final/ is there
        except EstimateError:
            return spec, None, True
    return RunSpec(), read_config(thing), False


def estimate_from_source(thing: str, *, method: str | None = None, regime: str | None = None,
                         batch_size: int | None = None, seq_len: int | None = None,
                         optimizer: str | None = None, dtype: str | None = None,
                         device_memory_gb: float | None = None, gradient_checkpointing: bool | None = None) -> dict:
    """estimate() for anything load_source reads, with the CLI's overrides."""
    spec, config, from_run = load_source(thing)
    if method:
        spec.method.name = method
    if regime:
        spec.method.regime = regime
    if optimizer:
        spec.train.optimizer = optimizer
    if batch_size:
        spec.train.batch_size = batch_size
    overrides = dict(seq_len=seq_len, dtype=dtype, gradient_checkpointing=gradient_checkpointing)
    if config is None:
        return estimate(spec, device_memory_gb, **overrides)
    if seq_len is None and from_run:
        overrides["seq_len"] = spec.model.max_seq_len  # the length that run trained with
    return _report(inventory(config), None, spec.method, spec.train, device_memory_gb, **overrides)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def cmd_estimate(args) -> int:
    try:
        result = estimate_from_source(
            args.source, method=args.method, regime=args.regime, batch_size=args.batch_size,
            seq_len=args.seq_len, optimizer=args.optimizer, dtype=args.dtype,
            device_memory_gb=args.device_memory_gb,
            gradient_checkpointing=True if args.gradient_checkpointing else None)
    except (EstimateError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = result["settings"]
    print(f"{result['architecture']}: {result['parameters']:,} parameters, "
          f"{result['trainable_parameters']:,} trainable ({s['regime']})")
    print(f"memory ({s['dtype']}, {s['optimizer']}, batch {s['batch_size']} x {s['seq_len']} tokens"
          f"{', checkpointing' if s['gradient_checkpointing'] else ''}):")
    for key, value in result["memory_bytes"].items():
        print(f"  {key:12s} {_human(value):>12s}")
    print(f"  {'kv cache':12s} {_human(result['kv_cache_bytes']):>12s}  (inference, same batch and length)")
    if "fits" in result:
        print(f"fits in {_human(result['device_memory_bytes'])}: {'yes' if result['fits'] else 'no'}")
    return 0


def add_cli(subparsers) -> None:
    """Register `estimate` on the studio CLI."""
    p = subparsers.add_parser(
        "estimate", help="parameters and training memory of a spec, config or model, without loading weights")
    p.add_argument("source", help="SPEC.yaml | config.json | model folder | run directory | preset name")
    p.add_argument("--method", help="method name (sft, dpo, ...)")
    p.add_argument("--regime", choices=("full", "freeze", "lora", "qlora", "dora", "prefix", "prompt", "ia3"))
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--device-memory-gb", type=float)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_estimate)


