"""`python -m studio ...`: the headless face of the studio.

Training goes through the same path as the UI (jobs.launch -> worker subprocess ->
run directory), so a CLI run shows up in the UI's history and vice versa.
Subcommands from other modules register through their `add_cli(subparsers)`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from studio import jobs
from studio.spec import SpecError

# modules that contribute subcommands (estimate, data, advise); each imports lightly
PLUGINS = ("studio.estimate", "studio.data", "studio.advisor.cli", "studio.export",
           "studio.ship.cli", "studio.rewards.cli", "studio.evaluate")  # serve: the OpenAI-compatible API (studio/serve.py is the app)


def _progress_bar(step: int, total: int, elapsed: float, loss) -> str:
    total = max(total, 1)
    frac = min(step / total, 1.0)
    bar = "#" * int(frac * 30)
    eta = (elapsed / step * (total - step)) if step else 0
    loss_s = f" loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    return f"\r[{bar:<30}] {step}/{total} {elapsed:5.0f}s eta {eta:4.0f}s{loss_s}"


def cmd_train(args) -> int:
    from studio.metrics import MetricsTail
    from studio.presets import load_run

    try:
        spec = load_run(args.spec).with_overrides(args.set or [])
        # jobs.launch runs jobs.preflight: the spec, the machine and a sample of every
        # data source are checked here, before a run directory exists
        run_dir = jobs.launch(spec, args.runs_dir)
    except (SpecError, jobs.JobError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Run directory: {run_dir}", flush=True)
    tail = MetricsTail(run_dir / "metrics.jsonl")
    loss = None
    start = time.time()
    shown = None
    try:
        while True:
            for rec in tail.read_new():
                if rec.get("kind") == "train" and rec.get("loss") is not None:
                    loss = rec["loss"]
            st = jobs.status(run_dir)
            if (sys.stderr.isatty() or args.progress) and (st.get("step"), loss) != shown:
                shown = (st.get("step"), loss)
                print(_progress_bar(st.get("step", 0), st.get("total", 0), time.time() - start, loss),
                      end="", file=sys.stderr, flush=True)
            if st.get("state") in jobs.TERMINAL:
                break
            if st.get("state") == "corrupt" and not jobs.worker_pids(run_dir):
                # a damaged status.json names no pid and no end; with the worker gone
                # nothing will ever mend it, so say what is known instead of polling on
                st = jobs.status(run_dir)  # the launcher's reaper may have just recorded the end
                if st.get("state") == "corrupt":
                    st["error"] = (f"The run's status is corrupt: {st.get('error')} Its training process "
                                   "has ended; see train.log for how it went.")
                    break
            # a status read is ~0.1 ms: polling often costs nothing and returns as soon as
            # the worker ends (a 0.5 s poll added 0.25 s on average to every CLI run)
            time.sleep(0.1)
    except KeyboardInterrupt:
        print("\nStopping (saving a checkpoint)...", file=sys.stderr)
        st = jobs.stop(run_dir, save=True)
    print(file=sys.stderr)
    state = st.get("state")
    print(f"{state}: {run_dir}")
    if state != "completed":
        if st.get("error"):
            print(st["error"], file=sys.stderr)
        return 1
    return 0


def cmd_runs(args) -> int:
    if args.action == "list":
        rows = jobs.list_runs(args.runs_dir)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                loss = f"{r['last_loss']:.4f}" if isinstance(r["last_loss"], float) else "-"
                print(f"{r['run_id']:<48} {r['state']:<10} {r['method']:<12} {r['step']}/{r['total']} loss {loss}")
        return 0
    run_dir = jobs.run_path(args.run, args.runs_dir)
    if args.action == "show":
        print(json.dumps(jobs.status(run_dir), indent=1))
    elif args.action == "stop":
        print(jobs.stop(run_dir, save=args.save).get("state"))
    elif args.action == "resume":
        jobs.resume(run_dir, args.max_steps, not args.no_optimizer)
        print(f"resumed: {run_dir}")
    elif args.action == "delete":
        print(jobs.delete_run(run_dir))
    return 0


def cmd_chat(args) -> int:
    from studio.inference import GenerationSettings, load, stream_chat

    try:
        loaded = load(args.model, trust_remote_code=args.trust_remote_code, runs_dir=args.runs_dir)
    except (ValueError, OSError, ImportError) as exc:
        # the loaders' refusals (not a model folder, pickled weights, not cached offline)
        # already name the field and the fix; a traceback would bury them
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  system_prompt=args.system or "")
    shown = ""
    for text in stream_chat(loaded, [{"role": "user", "content": args.prompt}], settings):
        sys.stdout.write(text[len(shown):])
        sys.stdout.flush()
        shown = text
    print()
    return 0


def cmd_methods(args) -> int:
    from studio.methods import table

    rows = table()
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['name']:<9} {r['title']:<42} data: {'/'.join(r['data_kinds']):<22} "
                  f"regimes: {','.join(r['regimes'])}  lr~{r['typical_lr']:g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studio", description="Training Studio, headless.")
    p.add_argument("--runs-dir", default=None, help="where runs live (default: ./runs or $STUDIO_RUNS_DIR)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a spec in the foreground")
    t.add_argument("spec", help="a spec YAML file, or a recipe name such as quickstart")
    t.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a field")
    t.add_argument("--progress", action="store_true", help="draw the progress bar even when not a TTY")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("runs", help="list and manage runs")
    rs = r.add_subparsers(dest="action", required=True)
    rl = rs.add_parser("list")
    rl.add_argument("--json", action="store_true")
    for name in ("show", "stop", "resume", "delete"):
        x = rs.add_parser(name)
        x.add_argument("run", help="run id or run directory")
        if name == "stop":
            x.add_argument("--save", action="store_true", help="save a checkpoint and final/ before stopping")
        if name == "resume":
            x.add_argument("--max-steps", type=int, default=None)
            x.add_argument("--no-optimizer", action="store_true", help="start a fresh optimizer")
    r.set_defaults(func=cmd_runs)

    c = sub.add_parser("chat", help="one reply from a run's model or a model folder")
    c.add_argument("model", help="run id, run directory, model folder or hub id")
    c.add_argument("--prompt", required=True)
    c.add_argument("--system", default=None)
    c.add_argument("--max-new-tokens", type=int, default=64)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    c.add_argument("--trust-remote-code", action="store_true")
    c.set_defaults(func=cmd_chat)

    m = sub.add_parser("methods", help="the method registry")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_methods)

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "add_cli"):
            module.add_cli(sub)
    _accept_globals_anywhere(p)
    return p


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse keeps no public list of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


def _accept_globals_anywhere(parser: argparse.ArgumentParser) -> None:
    """Every global option (--runs-dir, ...) also after the subcommand, as people type
    it: `studio train X --runs-dir D`. Each subparser gets a copy whose default is
    SUPPRESS, so an option given before the subcommand is not reset by its absence after."""
    globals_ = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    pending = list(_subparsers(parser))
    while pending:
        sp = pending.pop()
        pending.extend(_subparsers(sp))
        for action in globals_:
            if any(o in sp._option_string_actions for o in action.option_strings):
                continue  # the subcommand has an option of that name already
            kwargs = {"dest": action.dest, "default": argparse.SUPPRESS, "help": action.help}
            if action.nargs is not None:
                kwargs["nargs"] = action.nargs
            if type(action) is argparse._StoreAction:
                kwargs.update(type=action.type, metavar=action.metavar, choices=action.choices)
            else:  # store_true and friends: copy the action class itself
                kwargs["action"] = type(action)
                kwargs.pop("nargs", None)
            sp.add_argument(*action.option_strings, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # subparsers of plugins may not know --runs-dir; keep the global one available
    if not hasattr(args, "runs_dir"):
        args.runs_dir = None
    try:
        return args.func(args) or 0
    except (jobs.JobError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
