"""`python -m studio data inspect FILE_OR_SOURCE` and `python -m studio data mix SPEC --preview N`."""
from __future__ import annotations

import json
import sys

from studio.data.errors import DataError


def add_cli(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect data sources and preview a blend")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("inspect", help="detected format, rows, columns, bad rows, one normalised example")
    p.add_argument("source", help="a file path, a hub dataset name, or 'name | subset | weight'")
    p.add_argument("--format", default="auto", help="override the detected format")
    p.add_argument("--split", default=None, help="hub split (default train)")
    p.add_argument("--streaming", action="store_true", help="stream a hub dataset (first 1000 rows)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("mix", help="preview the blend a spec's data section makes")
    p.add_argument("spec", help="a run spec YAML file or a recipe name")
    p.add_argument("--preview", type=int, default=5, metavar="N", help="sampled rows to show")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer folder for token counts (default: the spec's; 'none' counts characters)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_mix)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def cmd_inspect(args) -> int:
    from studio.data.preview import inspect_source
    from studio.data.sources import parse_source_lines

    try:
        sources = parse_source_lines(args.source)
        if len(sources) != 1:
            raise DataError("source", "give exactly one file or dataset")
        source = sources[0]
        source.format = args.format
        source.streaming = args.streaming
        if args.split:
            source.split = args.split
        info = inspect_source(source)
    except DataError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False, default=str))
        return 0
    print(f"source:   {info['path']}")
    print(f"format:   {info['format']}" + ("" if info["detected"] == info["format"]
                                           else f" (detected: {info['detected']})") + f" - {info['title']}")
    print(f"kind:     {info['kind']}")
    print(f"rows:     {info['rows']} ({info['ok']} usable, {info['bad']} bad)")
    print(f"columns:  {', '.join(info['columns'])}")
    if info.get("test_file"):
        print(f"eval:     {info['test_file']}")
    if info.get("note"):
        print(f"note:     {info['note']}")
    for reason, count in info["reasons"].items():
        print(f"  bad x{count}: {reason}")
    for ex in info["examples"]:
        print(f"  e.g. line {ex['line']}: {ex['reason']}")
    if info["example"] is not None:
        print("example (normalised):")
        print(json.dumps(info["example"], indent=2, ensure_ascii=False)[:4000])
    return 0 if info["kind"] else 1


def cmd_mix(args) -> int:
    from studio.data.preview import preview
    from studio.presets import load_run
    from studio.spec import SpecError

    try:
        spec = load_run(args.spec)
        tokenizer = args.tokenizer or spec.model.tokenizer or None
        if spec.model.source == "pretrained" and not args.tokenizer:
            tokenizer = spec.model.name_or_path or tokenizer
        result = preview(spec, args.preview, None if str(tokenizer).lower() == "none" else tokenizer)
    except (DataError, SpecError, FileNotFoundError, OSError) as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return 0
    unit = result["unit"]
    print(f"method {result['method']} -> {result['kind']} rows; {result['mixing']} "
          f"({result['stopping_strategy']}); {result['total_rows']} training rows, {result['eval_rows']} eval")
    print(f"{'source':40} {'format':24} {'rows':>7} {'bad':>5} {'want':>6} {'got':>6}  {unit}: mean/p50/p90/max")
    for s in result["sources"]:
        ln = s["lengths"]
        print(f"{s['path'][-40:]:40} {s['format']:24} {s['train_rows'] or 0:>7} {s['bad']:>5} "
              f"{s['requested']:>6.1%} {s['achieved']:>6.1%}  {ln['mean']}/{ln['p50']}/{ln['p90']}/{ln['max']}")
    print(f"rows over max_seq_len={result['max_seq_len']} ({unit}): {result['truncated']} "
          f"({result['truncated_fraction']:.1%}), truncated in training")
    for r in result["rows"]:
        print(f"--- from [{r['source']}] {r['path']}")
        print(json.dumps(r["row"], ensure_ascii=False)[:600])
    return 0
