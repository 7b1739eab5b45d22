"""The parameter table of a model: its named parameters (as model.named_parameters()
lists them, shared ones once) and the linear/embedding modules adapters attach to,
written out per architecture (the studio's own model, the Llama family, GPT-2, Phi);
any other family is built on the meta device. Counts are exact because the names and
shapes are the built model's."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from studio.estimate.config import EstimateError, as_config


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


def numel(shape) -> int:
    return math.prod(shape)


def _get(c: dict, key: str, default):
    value = c.get(key)
    return default if value is None else value


def inventory(model, vocab_size: int | None = None) -> Inventory:
    """The parameter table of a ModelSpec, a config dict or a PretrainedConfig."""
    c = as_config(model, vocab_size)
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
        _qkv(inv, f"{p}.self_attn", H, nh, nkv, hd, qkv_bias)
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


def _qkv(inv: Inventory, prefix: str, H: int, nh: int, nkv: int, hd: int, bias: bool):
    """Separate query, key and value projections (grouped K/V heads), as Llama and Phi name them."""
    inv.linear(f"{prefix}.q_proj", H, nh * hd, bias, "attention")
    inv.linear(f"{prefix}.k_proj", H, nkv * hd, bias, "attention")
    inv.linear(f"{prefix}.v_proj", H, nkv * hd, bias, "attention")


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


def _phi_dims(c: dict) -> tuple:
    """Width, blocks, vocabulary, FFN width, heads, K/V heads, head size and tying of a
    Phi or Phi-3 config (both derive the head size and leave the head untied)."""
    H, nh = c["hidden_size"], c["num_attention_heads"]
    return (H, c["num_hidden_layers"], c["vocab_size"], c["intermediate_size"], nh,
            _get(c, "num_key_value_heads", nh), H // nh, _get(c, "tie_word_embeddings", False))


def _phi(c: dict) -> Inventory:
    H, L, V, I, nh, nkv, hd, tied = _phi_dims(c)
    inv = Inventory("phi", info=dict(hidden=H, layers=L, heads=nh, kv_heads=nkv, head_dim=hd, ffn=I, vocab=V,
                                     tied=tied, gated=False, position="rope", norm="layernorm",
                                     sliding_window=None, max_position=c.get("max_position_embeddings"),
                                     act="gelu", dropout=_get(c, "attention_dropout", 0.0)))
    inv.embedding("model.embed_tokens", V, H)
    for i in range(L):
        p = f"model.layers.{i}"
        _qkv(inv, f"{p}.self_attn", H, nh, nkv, hd, True)
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
    H, L, V, I, nh, nkv, hd, tied = _phi_dims(c)
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


def as_inventory(model, vocab_size: int | None = None) -> Inventory:
    """`model` itself when it is already an Inventory, else its inventory()."""
    return model if isinstance(model, Inventory) else inventory(model, vocab_size)


def count_parameters(model, vocab_size: int | None = None) -> dict:
    """total / embedding / non_embedding / per component; equal to sum(p.numel()) of the
    built model. "embedding" holds the token and position embeddings and an untied
    output head (the vocabulary-sized matrices). `model`: an Inventory or what
    inventory() reads."""
    inv = as_inventory(model, vocab_size)
    components: dict[str, int] = {}
    for _, shape, comp in inv.params:
        components[comp] = components.get(comp, 0) + numel(shape)
    total = sum(components.values())
    embedding = sum(components.get(k, 0) for k in ("embedding", "position_embedding", "lm_head"))
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding,
            "components": components, "model_type": inv.model_type}


def matmul_parameters(inv: Inventory) -> int:
    """Weights used in a matrix product per token: every linear, the head included
    (a tied head multiplies by the embedding matrix); lookups cost nothing."""
    return sum(n_in * n_out for _, n_in, n_out in inv.linears)
