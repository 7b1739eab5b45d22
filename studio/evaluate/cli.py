"""`python -m studio eval ...`: the three questions, a spec file, and the evaluations on disk.

    python -m studio eval learn RUN [--data assets/data/arith_sft_test.jsonl]
    python -m studio eval forget RUN
    python -m studio eval export RUN EXPORTED_FOLDER
    python -m studio eval run my-eval.yaml
    python -m studio eval list [RUN] | show EVAL_DIR | stop EVAL_DIR | tasks
"""
from __future__ import annotations

import json
import sys
import time


def add_cli(subparsers) -> None:
    e = subparsers.add_parser("eval", help="evaluate runs: did it learn, what did it forget, does the export match")
    es = e.add_subparsers(dest="eval_cmd", required=True)
    learn = es.add_parser("learn", help="the run's task on held-out data, tuned vs base")
    learn.add_argument("run")
    learn.add_argument("--data", default="", help="a prompt set with references (default: the run's held-out split)")
    forget = es.add_parser("forget", help="the general probe, tuned vs base")
    forget.add_argument("run")
    forget.add_argument("--probe", default="", help="a local multiple-choice probe (question, choices, answer)")
    export = es.add_parser("export", help="the same prompts through the run and its export, greedy")
    export.add_argument("run")
    export.add_argument("exported", help="the exported (merged) model folder")
    export.add_argument("--prompts", default="", help="a prompt file (default: the run's held-out split)")
    run = es.add_parser("run", help="an evaluation spec YAML (models x tasks x settings)")
    run.add_argument("spec")
    for p in (learn, forget, export, run):
        p.add_argument("--max-examples", type=int, default=0, help="at most this many examples per task (0 = all)")
        p.add_argument("--device", default=None, help="auto | cpu | cuda")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--max-new-tokens", type=int, default=None)
        p.add_argument("--foreground", action="store_true", help="evaluate in this process, not a background one")
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
        p.set_defaults(func=cmd_evaluate)
    ls = es.add_parser("list", help="evaluations on disk, newest first")
    ls.add_argument("run", nargs="?", default=None)
    ls.set_defaults(func=cmd_list)
    for name, fn in (("show", cmd_show), ("stop", cmd_stop)):
        x = es.add_parser(name)
        x.add_argument("eval_dir")
        x.set_defaults(func=fn)
    t = es.add_parser("tasks", help="lm-eval tasks: shipped ones and standard benchmarks (with data availability)")
    t.set_defaults(func=cmd_tasks)


def build_spec(args):
    from studio.evaluate import presets
    from studio.evaluate.spec import EvalSpec

    if args.eval_cmd == "run":
        spec = EvalSpec.load(args.spec)
    elif args.eval_cmd == "learn":
        spec = presets.learn(args.run, args.data)
    elif args.eval_cmd == "forget":
        spec = presets.forget(args.run, args.probe)
    else:
        spec = presets.export(args.run, args.exported, args.prompts)
    s = spec.settings
    s.device = args.device or s.device
    s.batch_size = args.batch_size or s.batch_size
    s.max_new_tokens = args.max_new_tokens or s.max_new_tokens
    if args.max_examples:
        for task in spec.tasks:
            task.max_examples = args.max_examples
    return spec


def cmd_evaluate(args) -> int:
    from studio.evaluate import background
    from studio.spec import SpecError

    try:
        spec = build_spec(args)
        eval_dir = background.create(spec, args.runs_dir)
    except (SpecError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Evaluation directory: {eval_dir}", flush=True)
    if args.foreground:
        return _foreground(eval_dir, args)
    background.start(eval_dir)
    try:
        st = _wait(eval_dir)
    except KeyboardInterrupt:
        st = background.stop(eval_dir)
    return _report(eval_dir, st, args)


def _foreground(eval_dir, args) -> int:
    from studio.evaluate import background
    from studio.evaluate.runner import run_eval

    background.write_status(eval_dir, state="running", started=time.time())
    try:
        run_eval(eval_dir, args.runs_dir)
    except Exception as exc:  # noqa: BLE001 - told as the evaluation's failure
        background.write_status(eval_dir, state="failed", ended=time.time(), error=str(exc))
    else:
        background.write_status(eval_dir, state="completed", ended=time.time())
    return _report(eval_dir, background.read_status(eval_dir), args)


def _wait(eval_dir) -> dict:
    from studio import jobs
    from studio.evaluate import background

    shown = None
    while True:
        st = background.status(eval_dir)
        if sys.stderr.isatty() and (st.get("done"), st.get("state")) != shown:
            shown = (st.get("done"), st.get("state"))
            eta = st.get("eta_s")
            print(f"\r{st.get('state')}: {st.get('done', 0)}/{st.get('total', 0)}"
                  + (f" eta {eta:.0f}s" if isinstance(eta, (int, float)) else ""), end="", file=sys.stderr)
        if st.get("state") in jobs.TERMINAL:
            return st
        time.sleep(0.2)


def _report(eval_dir, st: dict, args) -> int:
    from studio.evaluate import background
    from studio.evaluate.report import scorecard_text

    print(file=sys.stderr)
    if st.get("state") != "completed":
        print(f"{st.get('state')}: {st.get('error') or ''}", file=sys.stderr)
        return 1
    summary = background.read_summary(eval_dir) or {}
    print(json.dumps(summary, indent=1) if args.json else scorecard_text(summary))
    return 0


def cmd_list(args) -> int:
    from studio.evaluate import background

    for r in background.list_evals(args.runs_dir, args.run):
        print(f"{r['eval_id']:<44} {r['state']:<10} {r['done']}/{r['total']}  {r['path']}")
    return 0


def cmd_show(args) -> int:
    from studio.evaluate import background
    from studio.evaluate.report import scorecard_text

    summary = background.read_summary(args.eval_dir)
    if summary is None:
        print(json.dumps(background.status(args.eval_dir), indent=1))
        return 0
    print(scorecard_text(summary))
    return 0


def cmd_stop(args) -> int:
    from studio.evaluate import background

    print(background.stop(args.eval_dir).get("state"))
    return 0


def cmd_tasks(args) -> int:
    from studio.evaluate.lmeval import catalogue

    for r in catalogue():
        print(f"{r['task']:<22} {'offline' if r['offline'] else 'needs hub':<10} {r['what']}"
              + (f"  ({r['note']})" if r.get("note") else ""))
    return 0
