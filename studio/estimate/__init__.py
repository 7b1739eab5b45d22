"""What a model costs before anything is built: parameters, memory, FLOPs, time.

Pure arithmetic on a ModelSpec or a config.json dict; no torch import (the UI calls
this on every keystroke; only an architecture not written out below is built on the
meta device). The parameter count is exact because it is derived from a table of the
model's named parameters and linear modules, written out per architecture: the same
names the built model has, so freeze rules and LoRA/IA3 targets are matched against
them exactly as studio.model.adapters and peft match them on the real model.

    config       reading configs (local, run directories, the hub cache) and which
                 architecture a ModelSpec becomes (spec_config: the numbers it builds)
    inventory    the parameter table per architecture; exact counts
    trainable    which tensors train under each parameter regime
    memory       weights, gradients, optimizer states, KV cache
    activations  what one forward+backward keeps, calibrated on measured steps
    flops        FLOPs per token and time at a share of a device's peak
    report       estimate(spec) for the Model tab, estimate_from_source for the CLI
    cli          `studio estimate`

Conventions (what a real training step holds; see tests/test_estimate_memory.py):
- weights: every parameter in its storage dtype. bf16/fp16 training is mixed precision
  as the studio's worker runs it: trained weights stay fp32 under autocast, a frozen base
  under adapters sits in half precision (mixed_precision=False: all in the dtype).
  QLoRA: bitsandbytes 4-bit packing with its quantisation state (method.quant_bits 8: int8
  with a per-row fp32 scale), other parameters in fp32 (prepare_model_for_kbit_training).
- adapters (LoRA, DoRA, IA3, prefix, prompt) are fp32, as peft keeps them.
- gradients: one per trainable parameter, in that parameter's dtype.
- optimizer: adamw = torch AdamW (2 states + a 4-byte step tensor per parameter);
  adamw_8bit = bitsandbytes AdamW8bit as the transformers Trainer sets it up (embeddings
  and tensors under 4096 elements keep 32-bit states); adafactor = transformers' Adafactor
  (factored fp32 second moment, no first moment); lion = bitsandbytes Lion (one fp32
  state); sophia = studio.optim's Sophia (two states); muon = torch Muon on 2-D hidden
  matrices (one state) and AdamW for embeddings, head, norms and biases; galore_adamw =
  GaLore on the blocks' 2-D weights (a rank-128 projection and both moments at that rank).
- LoRA variants (rsLoRA, PiSSA/OLoRA init, LoRA+) train the same tensors as LoRA.
- activations: the extra memory one forward+backward needs on top of the above, for
  scaled-dot-product attention (no seq x seq matrix kept); calibrated against a
  tensor-allocation tracker on CPU (bench/estimate_memory.py).
"""
from __future__ import annotations

from studio.estimate.activations import MLP_ELEMENTS, activation_bytes
from studio.estimate.cli import add_cli, cmd_estimate
from studio.estimate.config import (
    DTYPE_BYTES, PRESET_DIR, REPO_ROOT, EstimateError, architecture_of, as_config, read_config, resolve_path,
    spec_config, tokenizer_vocab_size)
from studio.estimate.flops import estimate_time, flops_per_token
from studio.estimate.inventory import Inventory, as_inventory, count_parameters, inventory, matmul_parameters, numel
from studio.estimate.memory import (
    GALORE_RANK, OPTIMIZERS, estimate_memory, int8_linear_bytes, kv_cache_bytes, optimizer_bytes,
    quantized_linear_bytes, weight_bytes)
from studio.estimate.report import estimate, estimate_from_source, load_source, spec_problems
from studio.estimate.trainable import (
    BLOCK_INDEX, IA3_TARGETS, freeze_trains, ia3_targets, lora_targets, regime_of, trainable_parameters,
    trainable_tensors)
from studio.units import GIB

__all__ = [
    "BLOCK_INDEX", "DTYPE_BYTES", "GALORE_RANK", "GIB", "IA3_TARGETS", "MLP_ELEMENTS", "OPTIMIZERS", "PRESET_DIR",
    "REPO_ROOT", "int8_linear_bytes",
    "EstimateError", "Inventory", "activation_bytes", "add_cli", "architecture_of", "as_config", "as_inventory",
    "cmd_estimate", "count_parameters", "estimate", "estimate_from_source", "estimate_memory", "estimate_time",
    "flops_per_token", "freeze_trains", "ia3_targets", "inventory", "kv_cache_bytes", "load_source",
    "lora_targets", "matmul_parameters", "numel", "optimizer_bytes", "quantized_linear_bytes", "read_config",
    "regime_of", "resolve_path", "spec_config", "spec_problems", "tokenizer_vocab_size", "trainable_parameters",
    "trainable_tensors", "weight_bytes",
]
