"""`python -m studio advise`: the advisor's recommendation, path and reasons in a terminal."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from studio.advisor.answers import GOALS, REGIME_NAMES, WANTS, Answers
from studio.advisor.chart import NODES, child
from studio.advisor.inputs import detect_data_kind, guess_model_is_base, infer_answers, resolve_model
from studio.advisor.advice import advise
from studio.hardware import detect_device_memory
from studio.methods import REGISTRY
from studio.spec import RunSpec, SpecError
from studio.units import GIB, gib


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("advise", help="recommend a training method and parameter regime, with reasons")
    p.add_argument("--goal", choices=list(GOALS), help="what training should achieve")
    p.add_argument("--data", help="a data file (its kind is detected) or a run spec YAML (its data and model)")
    p.add_argument("--model", help="a spec YAML, a model preset, a recipe name, a model folder or a hub id")
    p.add_argument("--device-memory-gb", type=float, default=None, help="plan for this much memory (default: detect)")
    p.add_argument("--wants", choices=list(WANTS), help="what matters most")
    p.add_argument("--reward-model", action="store_true", default=None, help="a trained reward model is available")
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per training row to plan for (default: the model's max_seq_len)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_advise)


def _gather(args) -> tuple[Answers, list[str]]:
    notes: list[str] = []
    spec, kind, rows = None, None, None
    if args.data:
        data_path = Path(args.data)
        if data_path.suffix in (".yaml", ".yml"):
            spec = RunSpec.load(data_path)
            files = [s.path for s in spec.data.sources if s.kind == "file"]
            if files and Path(files[0]).is_file():
                kind, rows, how = detect_data_kind(files[0])
                notes.append(f"data kind {kind} from {files[0]}: {how}")
        else:
            kind, rows, how = detect_data_kind(data_path)
            notes.append(f"data kind {kind}: {how}")
    if args.model:
        spec = spec or RunSpec()
        spec.model = resolve_model(args.model)
    gb = args.device_memory_gb
    if gb is None:
        found, what = detect_device_memory()
        gb = found / GIB if found else None
        notes.append(f"device memory {gib(found, 1)} detected: {what}; --device-memory-gb plans for another device")
    if spec is not None:
        answers = infer_answers(spec, kind, device_memory_gb=gb)
        notes.append(f"model: {guess_model_is_base(spec.model)[1]}")
        if answers.memory_needed_full_bytes is None:
            notes.append("no memory estimate from studio.estimate: memory from the parameter count's rule of thumb")
    else:
        answers = Answers(data_kind=kind, device_memory_bytes=int(gb * GIB) if gb else None)
    answers.goal, answers.wants, answers.has_reward_model, answers.data_rows = args.goal, args.wants, args.reward_model, rows
    if getattr(args, "seq_len", None):
        answers.seq_len, answers.seq_len_source = args.seq_len, "--seq-len"
    return answers, notes


def _title(method: str, regime: str) -> str:
    return f"{REGISTRY[method].title} with {REGIME_NAMES[regime]}"


def cmd_advise(args) -> int:
    import json
    import sys

    try:
        answers, notes = _gather(args)
        advice = advise(answers)
    except (SpecError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(advice.to_dict() | {"answers": dataclasses.asdict(answers), "notes": notes}, indent=1))
        return 0
    print(f"Recommended: {_title(advice.method, advice.regime)}   (size class: {advice.size_bucket})")
    print("Path:")
    for i, step in enumerate(advice.path, 1):
        node = NODES[step.node_id]
        head = f"{node.label} -> {child(node.id, step.choice).choice_label}" if node.kind == "question" else node.label
        print(f"  {i}. {head}\n     {step.reason}")
    r = advice.runner_up
    print(f"Runner-up: {_title(r.method, r.regime)}: {r.why}")
    print(f"Other regime: {REGIME_NAMES[advice.regime_runner_up[0]]}: {advice.regime_runner_up[1]}")
    for w in advice.warnings:
        print(f"[{w.level}] {w.message}\n     fix: {w.fix}")
    if advice.fit:
        print(f"Memory: {advice.fit['share']} by the estimate ({'fits' if advice.fit['fits'] else 'does not fit'})")
    for key, why in advice.reasons.items():
        print(f"  {key}={advice.recipe.get(key)}: {why}")
    print("Recipe: " + " ".join(f"--set {k}={v}" for k, v in advice.recipe.items()))
    for note in notes:
        print(f"note: {note}")
    return 0
