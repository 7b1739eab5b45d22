"""Bytes a training step holds: weights, gradients, optimizer states, activations (in
studio.estimate.activations), and the inference KV cache. The conventions are in the
package's docstring; each figure is checked against a real step in the tests."""
from __future__ import annotations

from studio.estimate.activations import activation_bytes
from studio.estimate.config import DTYPE_BYTES, EstimateError
from studio.estimate.inventory import Inventory, as_inventory, numel
from studio.estimate.kernels import options as kernel_options
from studio.estimate.trainable import regime_of, trainable_tensors
from studio.units import GIB

OPTIMIZERS = ("adamw", "adamw_8bit", "adafactor", "lion", "sophia", "muon", "galore_adamw")
GALORE_RANK = 128  # transformers' default GaLore rank (optim_args rank=...)


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


def int8_linear_bytes(n_in: int, n_out: int) -> int:
    """bitsandbytes Linear8bitLt weight: one int8 per element plus an fp32 scale per row (SCB)."""
    return n_in * n_out + n_out * 4


def weight_bytes(inv: Inventory, regime: str, dtype: str, double_quant: bool = True, quant_bits: int = 4) -> int:
    if regime != "qlora":
        return sum(numel(s) for _, s, _ in inv.params) * DTYPE_BYTES[dtype]
    quantized = {name for name, _, _ in inv.linears if name != inv.output_module}
    total = 0
    for name, n_in, n_out in inv.linears:
        if name in quantized:
            total += (int8_linear_bytes(n_in, n_out) if quant_bits == 8
                      else quantized_linear_bytes(n_in, n_out, double_quant))
    # Everything not quantised (embeddings, norms, biases, the head) is fp32 after
    # peft's prepare_model_for_kbit_training.
    for name, shape, _ in inv.params:
        if not (name.endswith(".weight") and name[: -len(".weight")] in quantized):
            total += numel(shape) * 4
    return total


def optimizer_bytes(optimizer: str, tensors: list[tuple[str, tuple[int, ...], int]], embedding_names=()) -> int:
    """State bytes after the first step; tensors: (name, shape, bytes per element)."""
    total = 0
    qmaps = False
    for name, shape, elem in tensors:
        n = numel(shape)
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
                rows, cols = numel(shape[:-1]), numel(shape[:-2]) * shape[-1]
                total += (rows + cols) * 4 + 4  # factored second moment + RMS scalar
            else:
                total += n * 4 + 4
        elif optimizer == "lion":
            total += n * 4
        elif optimizer == "sophia":
            total += 2 * n * elem  # exp_avg, hessian estimate (studio.optim.Sophia)
        elif optimizer == "galore_adamw":
            # GaLore (transformers' optim_target_modules attn/mlp): a block's 2-D weight keeps
            # a projection (short side x rank) and both Adam moments at (rank x long side)
            if len(shape) == 2 and (".self_attn." in name or ".mlp." in name or ".attn." in name):
                rank = min(GALORE_RANK, *shape)
                total += (min(shape) * rank + 2 * rank * max(shape)) * 4 + 4
            else:
                total += 2 * n * elem + 4
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


def _sections(spec_or_model, method_spec, train_spec):
    """(model part, method, train) from a RunSpec or from the three sections."""
    if all(hasattr(spec_or_model, k) for k in ("model", "train", "method")):
        return spec_or_model.model, method_spec or spec_or_model.method, train_spec or spec_or_model.train
    return spec_or_model, method_spec, train_spec


def _checkpointing(train_spec, override) -> bool:
    if override is not None:
        return bool(override)
    return getattr(train_spec, "gradient_checkpointing", "off") == "on"


def estimate_memory(spec_or_model, method_spec=None, train_spec=None, device_memory_gb: float | None = None, *,
                    vocab_size: int | None = None, seq_len: int | None = None, batch_size: int | None = None,
                    dtype: str | None = None, optimizer: str | None = None,
                    gradient_checkpointing: bool | None = None, padded: bool = True,
                    mixed_precision: bool = True) -> dict:
    """Bytes a training step holds: weights, gradients, optimizer states, activations
    (total = their sum), plus the inference KV cache (same batch and length) and, given
    device_memory_gb (GiB), a fits verdict.

    `spec_or_model`: a RunSpec, or a ModelSpec / config dict / PretrainedConfig / Inventory with
    method_spec and train_spec. dtype: the training precision (default train.precision;
    "auto" = fp32). With mixed_precision (the studio worker's way) bf16/fp16 training keeps
    trainable weights in fp32 and autocasts, while a frozen base under adapters is stored
    in half precision; mixed_precision=False stores every weight in dtype.
    seq_len defaults to the ModelSpec's max_seq_len (a config: max_position_embeddings,
    at most 2048); batch_size to train.batch_size (one step's micro-batch);
    train.gradient_checkpointing "auto" counts as off. padded: batches carry padding, so
    attention needs a mask (what trainers do)."""
    model_part, method_spec, train_spec = _sections(spec_or_model, method_spec, train_spec)
    inv = as_inventory(model_part, vocab_size)
    regime = regime_of(method_spec)
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
    adapters = sum(numel(s) for _, s, a in tensors if a)
    weights = weight_bytes(inv, regime, storage, getattr(method_spec, "double_quant", True),
                           getattr(method_spec, "quant_bits", 4)) + adapters * 4
    gradients = sum(numel(s) * elem(a) for _, s, a in tensors)
    opt = optimizer_bytes(opt_name, [(n, s, elem(a)) for n, s, a in tensors], [e[0] for e in inv.embeddings])
    acts = activation_bytes(inv, method_spec, batch, seq, compute, ckpt, padded, autocast=mixed,
                            **kernel_options(train_spec))  # eager attention, Liger (estimate.kernels)
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
