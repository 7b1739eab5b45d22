"""`python -m studio reward try`: score completions with a reward before spending a run."""
from __future__ import annotations

import json
import sys


def add_cli(subparsers) -> None:
    r = subparsers.add_parser("reward", help="try a reward on completions; list the reward library")
    rs = r.add_subparsers(dest="reward_cmd", required=True)
    t = rs.add_parser("try", help="score completions with each component of a reward and their sum")
    t.add_argument("--reward", required=True,
                   help="as method.reward, e.g. 'think_format, numeric:tol=0.01' or '0.5*json_valid, json_match'")
    t.add_argument("--completion", action="append", required=True, help="a completion to score (repeat)")
    t.add_argument("--reference", action="append", default=None,
                   help="the answer column: once for all completions, or once per completion")
    t.add_argument("--prompt", default="", help="the prompt (rewards that read it, e.g. a reward model)")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t.set_defaults(func=cmd_try)
    ls = rs.add_parser("list", help="the reward library: names, what each scores, its arguments")
    ls.set_defaults(func=cmd_list)


def cmd_try(args) -> int:
    from studio.rewards.tryout import as_table, headers, score_completions

    try:
        scores = score_completions(args.reward, args.completion, args.reference,
                                   [args.prompt] * len(args.completion))
    except (ValueError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"components": scores.components, "weights": scores.weights,
                          "rows": [{"completion": c, "total": t, "scores": dict(zip(scores.components, r))}
                                   for c, t, r in zip(args.completion, scores.totals, scores.rows)]}, indent=1))
        return 0
    table = [headers(scores)] + [[str(x) for x in row] for row in as_table(scores, args.completion)]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    return 0


def cmd_list(args) -> int:
    from studio.rewards.registry import LIBRARY, params

    for name, (_, text, needs) in LIBRARY.items():
        extra = f" [{', '.join(params(name))}]" if params(name) else ""
        print(f"{name}{extra}: {text}{' (reads answer)' if needs else ''}")
    print("file:path=<your .py>[,function=reward]: your own function (local mode only)")
    print("model:<reward run dir>: a trained reward model")
    return 0
