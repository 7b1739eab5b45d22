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
    t.add_argument("--completion", action="append", default=None,
                   help="a completion to score (repeat); or sample them with --run")
    t.add_argument("--reference", action="append", default=None,
                   help="the answer column: once for all completions, or once per completion")
    t.add_argument("--prompt", default="", help="the prompt (rewards that read it, e.g. a reward model)")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    g = t.add_argument_group("sampled completions", "score the replies of a run's model instead of --completion")
    g.add_argument("--run", default=None,
                   help="a run id, a recipe name (its newest finished run, e.g. extract-json-sft), or a model folder")
    g.add_argument("--data", default="assets/data/extract_prompts_test.jsonl",
                   help="prompt rows (prompt + answer) or conversations; the first --prompts rows are used")
    g.add_argument("--prompts", type=int, default=4, help="K: how many prompts of --data (default 4)")
    g.add_argument("--samples", type=int, default=4, help="N: completions per prompt, as a GRPO group (default 4)")
    g.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0: greedy)")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_try)
    ls = rs.add_parser("list", help="the reward library: names, what each scores, its arguments")
    ls.set_defaults(func=cmd_list)


def _score(args):
    """(completions, per-completion prompt texts or None, Scores, model folder or None)."""
    from studio.rewards.tryout import score_completions

    if args.run:
        if args.completion:
            raise ValueError("--completion and --run: score pasted completions or sampled ones, not both")
        from studio.rewards.sampling import sample_and_score

        got, scores = sample_and_score(args.reward, args.run, args.data, args.prompts, args.samples, args.runs_dir,
                                       temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                       seed=args.seed)
        return got.completions, [got.prompt_text(i) for i in range(len(got.completions))], scores, got.model
    if not args.completion:
        raise ValueError("give completions to score (--completion, repeated) or a run to sample them from (--run)")
    scores = score_completions(args.reward, args.completion, args.reference, [args.prompt] * len(args.completion))
    return args.completion, None, scores, None


def cmd_try(args) -> int:
    from studio.rewards.tryout import as_table, headers, spread

    try:
        completions, prompts, scores, model = _score(args)
    except (ValueError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        rows = [{"completion": c, "total": t, "scores": dict(zip(scores.components, r))}
                for c, t, r in zip(completions, scores.totals, scores.rows)]
        for row, prompt in zip(rows, prompts or []):
            row["prompt"] = prompt
        out = {"components": scores.components, "weights": scores.weights, "rows": rows}
        if model:
            out.update(model=model, **spread(scores, args.samples))
        print(json.dumps(out, indent=1))
        return 0
    if model:
        print(f"{len(completions)} completions of {model}")
    table = [headers(scores)] + [[str(x) for x in row] for row in as_table(scores, completions)]
    if prompts:
        table = [["prompt", *table[0]]] + [[" ".join(p.split())[:40], *row] for p, row in zip(prompts, table[1:])]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    if model:
        info = spread(scores, args.samples)
        print(f"mean total {info['mean_total']:.4f}; groups with no spread in total "
              f"(GRPO learns nothing from them): {info['flat_groups']} of {info['groups']}")
    return 0


def cmd_list(args) -> int:
    from studio.rewards.registry import LIBRARY, params

    for name, (_, text, needs) in LIBRARY.items():
        extra = f" [{', '.join(params(name))}]" if params(name) else ""
        print(f"{name}{extra}: {text}{' (reads answer)' if needs else ''}")
    print("file:path=<your .py>[,function=reward]: your own function (local mode only)")
    print("model:<reward run dir>: a trained reward model")
    return 0
