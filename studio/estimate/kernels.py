"""What the speed options (train.attn_implementation, train.use_liger_kernel) change in
a step's activation memory; studio.estimate.activations adds these terms.

Attention. SDPA and flash kernels keep no (seq x seq) matrix: Korthikanti et al.'s
5*a*s/h term per token vanishes. transformers' eager attention computes the softmax in
fp32 and keeps it for the backward: per block and token, heads x keys x 4 bytes (plus the
half-precision copy the value matmul saves under bf16/fp16). The backward of the last block
holds a few more such matrices at once, and eager builds a (seq x keys) additive mask
where SDPA runs is_causal. Measured on CPU with the allocation tracker of
bench/estimate_memory.py (tiny Llamas, 2-4 blocks, seq 256-1024, fp32): 4.06 bytes per
score kept per block and 6.8 more at the peak (tests/test_speed_options.py's estimate
test checks a shape it was not fitted on).

Liger's fused linear cross-entropy never materialises the logits: it walks the tokens in
chunks of next_pow2(ceil(tokens / ceil(V / H))) rows, computing each chunk's logits, softmax
gradient and the hidden state's gradient in the forward. What stays is the gradient of the
hidden states (tokens x H) and, for a trained head, its weight gradient (V x H, fp32
accumulation), plus one chunk's fp32 logits and their gradient. Liger runs only on CUDA
(Triton): the GPU check (bench/gpu_check.py) measures this term.
"""
from __future__ import annotations

import math

EAGER_KEPT = 4.06  # bytes per attention score kept by each block (fp32 softmax output)
EAGER_PEAK = 6.8  # bytes per score of the last block's backward and the mask, at the peak
LOSS_BYTES_PER_VOCAB = 12  # logits, log-softmax and its gradient (see activations.py)


def eager_per_token(heads: int, keys: int, e: int) -> float:
    """Bytes per token one block keeps with eager attention beyond SDPA's."""
    half_copy = e if e < 4 else 0  # the softmax cast back to bf16/fp16 for the value matmul
    return heads * keys * (EAGER_KEPT + half_copy)


def eager_peak(batch: int, seq: int, heads: int, keys: int) -> float:
    """The extra bytes at the peak of the last block's backward (once per step)."""
    return batch * seq * heads * keys * EAGER_PEAK


def liger_chunk_rows(tokens: int, vocab: int, hidden: int) -> int:
    rows = math.ceil(tokens / max(1, math.ceil(vocab / hidden)))
    return 1 << max(0, (rows - 1).bit_length())


def loss_bytes(tokens: int, vocab: int, hidden: int, e: int, liger: bool, head_trained: bool) -> float:
    """Bytes the loss holds at its peak: the logits' 12 bytes per vocabulary entry per
    token, or Liger's chunked cross-entropy (see the module docstring)."""
    if not liger:
        return tokens * LOSS_BYTES_PER_VOCAB * vocab
    chunk = min(tokens, liger_chunk_rows(tokens, vocab, hidden))
    return tokens * hidden * e + (vocab * hidden * 4 if head_trained else 0) + 2 * chunk * vocab * 4


def options(train_spec) -> dict:
    """The speed options the estimate models, from a TrainSpec (or None: the defaults)."""
    attn = getattr(train_spec, "attn_implementation", "auto")
    return {"attn": "eager" if attn == "eager" else "sdpa", "liger": bool(getattr(train_spec, "use_liger_kernel", False))}
