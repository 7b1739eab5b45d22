"""`python -m studio estimate`: parameters and training memory of a spec, config or
model in a terminal, without loading weights."""
from __future__ import annotations

import json
import sys

from studio.estimate.config import EstimateError
from studio.estimate.memory import OPTIMIZERS
from studio.estimate.report import estimate_from_source
from studio.methods import ALL_REGIMES
from studio.units import human_bytes


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
        print(f"  {key:12s} {human_bytes(value, 1):>12s}")
    print(f"  {'kv cache':12s} {human_bytes(result['kv_cache_bytes'], 1):>12s}  (inference, same batch and length)")
    if "fits" in result:
        print(f"fits in {human_bytes(result['device_memory_bytes'], 1)}: {'yes' if result['fits'] else 'no'}")
    return 0


def add_cli(subparsers) -> None:
    """Register `estimate` on the studio CLI."""
    p = subparsers.add_parser(
        "estimate", help="parameters and training memory of a spec, config or model, without loading weights")
    p.add_argument("source", help="SPEC.yaml | config.json | model folder | run directory | preset name")
    p.add_argument("--method", help="method name (sft, dpo, ...)")
    p.add_argument("--regime", choices=ALL_REGIMES)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--device-memory-gb", type=float)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_estimate)

