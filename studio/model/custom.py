"""The studio's own decoder: every ModelSpec combination transformers has no class for.

Llama/Mistral cover rope|yarn + rmsnorm + swiglu; everything else (sinusoidal or ALiBi
positions, LayerNorm, non-gated relu/gelu/silu/leaky_relu MLPs, a sliding window with
attention biases, ...) builds this model. Module names follow Llama's (model.layers.N.
self_attn.q_proj, mlp.up_proj, ...) so peft's LoRA/IA3 targets and the estimator's
parameter table read the same names for both.

Written by hand because no transformers class offers these options together; the rest
(rotary embeddings, caches, generation, loss, checkpointing) is transformers' own.
Registered with the Auto classes by `import studio.model`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GenericForSequenceClassification, GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

ROTARY = ("rope", "yarn")


class StudioConfig(PreTrainedConfig):
    model_type = "studio"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 32000
    hidden_size: int = 128
    intermediate_size: int = 352
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "gelu"  # relu | gelu | silu | leaky_relu | swiglu (gated)
    norm_type: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    position_embedding: str = "sinusoidal"  # sinusoidal | rope | alibi | yarn
    max_position_embeddings: int = 2048
    rope_parameters: dict | None = None
    sliding_window: int | None = None
    attention_bias: bool = False
    dropout: float = 0.0
    initializer_range: float = 0.02
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.rope_parameters is None and "rope_scaling" not in kwargs:
            self.rope_parameters = {"rope_type": "default", "rope_theta": kwargs.pop("rope_theta", 10000.0)}
        super().__post_init__(**kwargs)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head ALiBi slopes (Press et al.): a geometric series, interleaved when
    n_heads is not a power of two."""
    def power_of_two(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_two(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def sinusoidal_table(position_ids: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Fixed sin/cos encodings for the given positions: (batch, seq) -> (batch, seq, dim)."""
    half = (dim + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=position_ids.device, dtype=torch.float32) * 2 / dim)
    angles = position_ids.float()[..., None] * freq
    table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)[..., :dim]
    return table.to(dtype)


class AttentionMask:
    """Builds the additive mask for one forward, per key length (a sliding-window cache
    returns fewer keys than a full one): causal, padding, window and ALiBi together.

    Queries sit at absolute indices past..past+q_len-1; the k_len keys returned by the
    cache are the last k_len of the past+q_len seen so far. Distances are counted in
    sequence indices, which equal position distances because padding is on the left.
    """

    def __init__(self, attention_mask, past_len, q_len, sliding_window, slopes, dtype, device):
        self.mask2d = attention_mask
        self.past_len, self.q_len = past_len, q_len
        self.window, self.slopes = sliding_window, slopes
        self.dtype, self.device = dtype, device
        self._memo: dict[int, torch.Tensor | None] = {}

    def __call__(self, k_len: int):
        if k_len not in self._memo:
            self._memo[k_len] = self._build(k_len)
        return self._memo[k_len]

    def is_plain_causal(self, k_len: int) -> bool:
        return (self.mask2d is None and self.slopes is None and self.past_len == 0 and k_len == self.q_len
                and (self.window is None or self.window >= self.q_len))

    def _build(self, k_len: int):
        if self.mask2d is not None and self.mask2d.dim() == 4:
            extra = self.mask2d
            if extra.dtype == torch.bool:
                extra = torch.zeros(extra.shape, dtype=self.dtype, device=self.device).masked_fill(~extra, torch.finfo(self.dtype).min)
            return extra if self.slopes is None else extra + self._alibi(k_len)
        if self.is_plain_causal(k_len):
            return None  # scaled_dot_product_attention(is_causal=True) is faster
        if self.q_len == 1 and self.mask2d is None and self.slopes is None and self.window is None:
            return None  # one new token may see every cached key
        total = self.past_len + self.q_len
        q_idx = torch.arange(self.past_len, total, device=self.device)[:, None]
        k_idx = torch.arange(total - k_len, total, device=self.device)[None, :]
        allowed = k_idx <= q_idx
        if self.window is not None:
            allowed = allowed & (q_idx - k_idx < self.window)
        allowed = allowed[None, None]  # (1, 1, q, k)
        if self.mask2d is not None:
            keys = self.mask2d[:, -k_len:].bool() if self.mask2d.shape[-1] >= k_len else self.mask2d.bool()
            allowed = allowed & keys[:, None, None, :]
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        if self.slopes is not None:
            bias = bias + self._alibi(k_len)
        return bias.masked_fill(~allowed, torch.finfo(self.dtype).min)

    def _alibi(self, k_len: int) -> torch.Tensor:
        total = self.past_len + self.q_len
        q_idx = torch.arange(self.past_len, total, device=self.device)[:, None]
        k_idx = torch.arange(total - k_len, total, device=self.device)[None, :]
        distance = (q_idx - k_idx).clamp(min=0).to(torch.float32)
        slopes = self.slopes.to(self.device)[None, :, None, None]
        return (-slopes * distance[None, None]).to(self.dtype)


def make_norm(config: StudioConfig) -> nn.Module:
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps)


class StudioAttention(nn.Module):
    def __init__(self, config: StudioConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.rotary = config.position_embedding in ROTARY
        self.dropout = config.dropout
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, hidden_states, mask: AttentionMask, position_embeddings=None, past_key_values=None):
        b, s, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        if self.rotary:
            cos, sin = position_embeddings
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        k_len = k.shape[-2]
        attn_mask = mask(k_len)
        causal = attn_mask is None and mask.is_plain_causal(k_len) and s > 1
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv != self.n_heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim))


class StudioMLP(nn.Module):
    """swiglu: down(silu(gate(x)) * up(x)); otherwise down(act(up(x)))."""

    def __init__(self, config: StudioConfig):
        super().__init__()
        self.gated = config.hidden_act == "swiglu"
        if self.gated:
            self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act = {
            "relu": nn.ReLU(), "gelu": nn.GELU(), "silu": nn.SiLU(), "swiglu": nn.SiLU(),
            "leaky_relu": nn.LeakyReLU(0.01),
        }[config.hidden_act]

    def forward(self, x):
        if self.gated:
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.act(self.up_proj(x)))


class StudioBlock(GradientCheckpointingLayer):
    def __init__(self, config: StudioConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = make_norm(config)
        self.self_attn = StudioAttention(config, layer_idx)
        self.post_attention_layernorm = make_norm(config)
        self.mlp = StudioMLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states, mask=None, position_embeddings=None, past_key_values=None, **kwargs):
        attn = self.self_attn(self.input_layernorm(hidden_states), mask, position_embeddings, past_key_values)
        hidden_states = hidden_states + self.dropout(attn)
        return hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))


class StudioPreTrainedModel(PreTrainedModel):
    config_class = StudioConfig
    config: StudioConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["StudioBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True


class StudioModel(StudioPreTrainedModel):
    def __init__(self, config: StudioConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([StudioBlock(config, i) for i in range(config.num_hidden_layers)])
        self.norm = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)
        self.rotary_emb = LlamaRotaryEmbedding(config) if config.position_embedding in ROTARY else None
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_hidden_states=None, **kwargs) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        b, s, _ = inputs_embeds.shape
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + s, device=inputs_embeds.device)[None].expand(b, s)

        hidden = inputs_embeds
        position_embeddings = None
        kind = self.config.position_embedding
        if kind == "sinusoidal":
            # Vaswani et al. scale the token embedding by sqrt(d) so it is not drowned by the table.
            hidden = hidden * math.sqrt(self.config.hidden_size) + sinusoidal_table(
                position_ids, self.config.hidden_size, hidden.dtype)
        elif kind in ROTARY:
            position_embeddings = self.rotary_emb(hidden, position_ids)
        hidden = self.dropout(hidden)

        # Slopes are computed here, not kept as a buffer: loading from a checkpoint leaves
        # non-persistent buffers uninitialised.
        slopes = alibi_slopes(self.config.num_attention_heads) if kind == "alibi" else None
        if attention_mask is not None and attention_mask.dim() == 2 and bool(attention_mask.all()):
            attention_mask = None  # no padding: the causal fast path, no (batch, q, k) mask in memory
        if attention_mask is None and past_len == 0 and s > 1 and bool((position_ids[:, 1:] == 0).any()):
            attention_mask = packed_mask(position_ids, self.config.sliding_window)  # padding-free rows (#26)
        mask = AttentionMask(attention_mask, past_len, s, self.config.sliding_window, slopes,
                             hidden.dtype, hidden.device)
        collected = [] if output_hidden_states else None
        for layer in self.layers:
            if collected is not None:
                collected.append(hidden)
            hidden = layer(hidden, mask=mask, position_embeddings=position_embeddings,
                           past_key_values=past_key_values)
        hidden = self.norm(hidden)
        if collected is not None:  # transformers' convention: the embeddings, each block's input, the final output
            collected.append(hidden)
        return BaseModelOutputWithPast(last_hidden_state=hidden, past_key_values=past_key_values,
                                       hidden_states=tuple(collected) if collected is not None else None)


def packed_mask(position_ids, window=None):
    """(b, 1, s, s) bool mask for rows flattened into one sequence (trl's padding-free
    batches): each token sees earlier tokens of its own row only, a row starting where
    its position_ids restart at 0."""
    row = (position_ids == 0).cumsum(-1)
    idx = torch.arange(position_ids.shape[-1], device=position_ids.device)
    allowed = (row[:, :, None] == row[:, None, :]) & (idx[None, :] <= idx[:, None])[None]
    if window is not None:
        allowed = allowed & ((idx[:, None] - idx[None, :]) < window)[None]
    return allowed[:, None]


class StudioForCausalLM(StudioPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: StudioConfig):
        super().__init__(config)
        self.model = StudioModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                past_key_values: Cache | None = None, inputs_embeds=None, labels=None, use_cache=None,
                logits_to_keep: int | torch.Tensor = 0, output_hidden_states=None, **kwargs) -> CausalLMOutputWithPast:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                         output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:, :]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep, :]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states)


class StudioForSequenceClassification(GenericForSequenceClassification, StudioPreTrainedModel):
    """The trunk with a linear score on the last non-pad token (reward models)."""


def register() -> None:
    """Make the Auto classes know model_type "studio" (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    AutoConfig.register("studio", StudioConfig, exist_ok=True)
    AutoModel.register(StudioConfig, StudioModel, exist_ok=True)
    AutoModelForCausalLM.register(StudioConfig, StudioForCausalLM, exist_ok=True)
    AutoModelForSequenceClassification.register(StudioConfig, StudioForSequenceClassification, exist_ok=True)
