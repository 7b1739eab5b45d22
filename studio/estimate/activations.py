"""Activation memory: the extra bytes one forward+backward needs on top of weights,
gradients and optimizer states, for scaled-dot-product attention (no seq x seq matrix
kept); calibrated against a tensor-allocation tracker on CPU (bench/estimate_memory.py)."""
from __future__ import annotations

from studio.estimate.config import DTYPE_BYTES
from studio.estimate.inventory import Inventory, matmul_parameters
from studio.estimate.kernels import eager_peak, eager_per_token, loss_bytes
from studio.estimate.trainable import lora_targets, regime_of, trainable_tensors
from studio.spec import comma_list

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


def _compute_bytes(method_spec, regime: str, dtype: str) -> int:
    """Bytes per activation element: QLoRA runs in its 4-bit layers' compute dtype."""
    if regime == "qlora":
        chosen = getattr(method_spec, "compute_dtype", "auto")
        dtype = dtype if chosen in (None, "auto") else chosen
    return DTYPE_BYTES[dtype]


def _block_bytes(inv: Inventory, method_spec, regime: str, e: int, keys: int, padded: bool,
                 autocast: bool) -> float:
    """Bytes per token one transformer block keeps for its backward."""
    info = inv.info
    H, I, nh = info["hidden"], info["ffn"], info["heads"]
    kv = info["kv_heads"] * info["head_dim"]
    studio = inv.model_type == "studio"
    rms = info.get("norm") == "rmsnorm"
    window = info.get("sliding_window")
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
    return layer


def _tied_buffer(inv: Inventory, method_spec, e: int, autocast: bool) -> int:
    """A head tied to a trained embedding: autograd holds the head's share of the shared
    gradient (V x H) from the head's backward until the embedding's share arrives."""
    info = inv.info
    embedding = f"{inv.embeddings[0][0]}.weight" if inv.embeddings else None
    if info.get("tied") and embedding and any(n == embedding for n, _, _ in trainable_tensors(inv, method_spec)):
        return info["vocab"] * info["hidden"] * (4 if autocast else e)
    return 0


def _mask_bytes(inv: Inventory, batch: int, seq: int, keys: int, e: int, padded: bool) -> int:
    """Masks the studio's own model builds once per step (transformers' are per block)."""
    info = inv.info
    if inv.model_type != "studio":
        return 0
    heads = info["heads"] if info.get("position") == "alibi" else 1
    rows = batch if padded else 1
    if padded or heads > 1 or info.get("sliding_window") is not None:
        return rows * heads * seq * keys * e
    return 0


def activation_bytes(inv: Inventory, method_spec, batch: int, seq: int, dtype: str,
                     checkpointing: bool = False, padded: bool = True, autocast: bool = False,
                     attn: str = "sdpa", liger: bool = False) -> int:
    """Peak bytes a forward+backward keeps besides weights, gradients and optimizer
    states: saved activations, attention masks, logits and the loss's buffers.
    dtype: the compute dtype; autocast: half-precision compute over fp32 trainable
    weights (torch.autocast, as the Trainer runs bf16/fp16). attn "eager" adds the kept
    attention scores, liger swaps the logits for Liger's chunked loss (estimate.kernels)."""
    info = inv.info
    H, I, V, L = info["hidden"], info["ffn"], info["vocab"], info["layers"]
    regime = regime_of(method_spec)
    e = _compute_bytes(method_spec, regime, dtype)
    tokens = batch * (seq + (method_spec.num_virtual_tokens if regime == "prompt" else 0))
    keys = seq + (method_spec.num_virtual_tokens if regime == "prefix" else 0)
    layer = _block_bytes(inv, method_spec, regime, e, keys, padded, autocast)
    if attn == "eager":
        layer += eager_per_token(info["heads"], keys, e)
    frozen = regime not in ("full", "freeze")
    layers = L
    if regime == "freeze" and not any("embed" in f for f in comma_list(method_spec.freeze_extra_modules)):
        layers = min(L, method_spec.freeze_trainable_layers)  # no gradient flows below the trained blocks

    head_trained = not frozen
    loss = loss_bytes(tokens, V, H, e, liger, head_trained) / max(tokens, 1) + (0 if frozen else (10 if autocast else e * 3) * H)
    # autocast keeps a half-precision copy of each trained linear weight for the backward
    copies = 2 * matmul_parameters(inv) if autocast and not frozen else 0
    tied_buffer = _tied_buffer(inv, method_spec, e, autocast)
    constant = _mask_bytes(inv, batch, seq, keys, e, padded)
    if attn == "eager":
        constant += eager_peak(batch, seq, info["heads"], keys)
    if checkpointing:
        rms = info.get("norm") == "rmsnorm"
        hf_rms = rms and inv.model_type != "studio"
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
