"""Compute: FLOPs per token (forward and training step) and the time a number of
tokens takes at a given share of a device's peak."""
from __future__ import annotations

from studio.estimate.config import EstimateError
from studio.estimate.inventory import as_inventory, matmul_parameters
from studio.estimate.trainable import regime_of


def flops_per_token(model, seq_len: int | None = None, method_spec=None, vocab_size: int | None = None,
                    training: bool = True) -> float:
    """Forward = 2 x matmul weights + 4 x layers x seq x attention width (QK^T and AV).
    Training = 3 x forward (6N + 12 L s d); frozen weights skip their weight gradient,
    so adapter/freeze regimes cost about forward + input gradients = 2 x forward.
    `model`: an Inventory or what inventory() reads."""
    inv = as_inventory(model, vocab_size)
    info = inv.info
    seq = seq_len or info.get("max_position") or 2048
    window = info.get("sliding_window")
    span = min(seq, window) if window else seq
    forward = 2 * matmul_parameters(inv) + 4 * info["layers"] * span * info["heads"] * info["head_dim"]
    if not training:
        return float(forward)
    return float(3 * forward if regime_of(method_spec) == "full" else 2 * forward)


def estimate_time(tokens: float, flops_per_token: float, peak_tflops: float, utilisation: float = 0.4) -> dict:
    """Seconds for `tokens` at `utilisation` of `peak_tflops` (model FLOPs utilisation)."""
    if peak_tflops <= 0 or not 0 < utilisation <= 1:
        raise EstimateError("peak_tflops must be positive and utilisation in (0, 1], e.g. 0.4")
    rate = peak_tflops * 1e12 * utilisation / flops_per_token
    return {"tokens_per_second": rate, "seconds": tokens / rate, "hours": tokens / rate / 3600}
