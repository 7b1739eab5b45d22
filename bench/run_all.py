"""Every benchmark in one go, then one summary table against the targets.

    .venv/bin/python bench/run_all.py            # the figures in README "Performance"
    .venv/bin/python bench/run_all.py --quick    # fewer steps/rounds: a smoke run
    .venv/bin/python bench/run_all.py --only chat_latency,ui_latency

Runs each script as its own process (so one's imports do not warm another's), shows its
output as it goes, and reads the JSON each writes under bench/results/. The data
pipeline (bench/data_pipeline.py) and estimator accuracy (bench/estimate_memory.py)
belong to the data and model layers; their tables are shown as they print them.
Writes bench/results/summary.json. Takes ~40-70 minutes on 2 busy cores (--quick: ~15).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PYTHON, REPO, RESULTS, fmt, table, write_json  # noqa: E402

BENCH = REPO / "bench"


def plan(quick: bool) -> dict[str, list[str]]:
    few = quick
    return {
        "train_overhead": ["train_overhead.py", "--steps", "10" if few else "30", "--repeats", "1" if few else "3"],
        "vs_llamafactory": ["vs_llamafactory.py", "--steps", "10" if few else "30", "--repeats", "1" if few else "3"],
        "ui_latency": ["ui_latency.py", "--repeats", "1" if few else "3", "--metrics", "3" if few else "5"],
        "chat_latency": ["chat_latency.py", "--rounds", "10" if few else "100"],
        "data_pipeline": ["data_pipeline.py", "--rows", "20000" if few else "100000"],
        "estimate_memory": ["estimate_memory.py"],
        "serve_latency": ["serve_latency.py", "--rounds", "5" if few else "30"],
        "serve_latency_small": ["serve_latency.py", "--size", "small", "--rounds", "5" if few else "30"],
    }


def run(name: str, argv: list[str]) -> dict:
    script = BENCH / argv[0]
    if not script.exists():
        print(f"== {name}: {script.relative_to(REPO)} is not there yet, skipped", flush=True)
        return {"status": "missing", "output": []}
    print(f"== {name}: {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen([PYTHON, str(script), *argv[1:]], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))
    proc.wait()
    took = time.perf_counter() - start
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    print(f"== {name}: {status} in {took:.0f} s\n", flush=True)
    # warnings and progress bars are noise in the summary: keep the last table-ish lines
    kept = [ln for ln in lines if ln.strip() and "Warning" not in ln and "%|" not in ln][-30:]
    return {"status": status, "seconds": round(took, 1), "output": kept}


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(value, target: float, lower_is_better: bool = True) -> str:
    if value is None:
        return "-"
    ok = value <= target if lower_is_better else value >= target
    return "meets" if ok else "misses"


def summary_rows(ran: dict) -> list[list]:
    """Rows from the latest JSON of each script (this run's, or an earlier one's when
    --only skipped it: each JSON records when it was measured)."""
    rows = []
    t = load("train_overhead")
    if t:
        rows.append(["training: studio worker / bare trl, wall", fmt(t["wall_ratio"], 3), "<= 1.05",
                     verdict(t["wall_ratio"], 1.05)])
        if t.get("cpu_ratio") is not None:
            rows.append(["training: studio worker / bare trl, CPU time", fmt(t["cpu_ratio"], 3), "<= 1.05",
                         verdict(t["cpu_ratio"], 1.05)])
        rows.append(["training: bare / studio tokens/s", fmt(t["tokens_per_s_ratio"], 3), "<= 1.05",
                     verdict(t["tokens_per_s_ratio"], 1.05)])
        rows.append(["training: max |loss diff| per step", f"{t['loss_max_abs_diff']:.2e}"
                     if t["loss_max_abs_diff"] is not None else "-", "~0 (fp32)", "-"])
    lf = load("vs_llamafactory")
    if lf:
        for regime, job in lf["jobs"].items():
            if job.get("wall_ratio") is not None:
                rows.append([f"vs LlamaFactory ({regime}): wall", fmt(job["wall_ratio"], 3), "<= 0.75",
                             verdict(job["wall_ratio"], 0.75)])
            else:
                rows.append([f"vs LlamaFactory ({regime}): wall", "-", "<= 0.75",
                             "not run: " + (job.get("llamafactory_error") or "?")[:60]])
    ui = load("ui_latency")
    if ui:
        ps = ui["page_served"]
        rows.append(["page served: studio / bare gradio", fmt(ps["ratio"], 3), "-",
                     f"{fmt(ps['studio_s'])} s vs {fmt(ps['bare_gradio_s'])} s"])
        chart = ui.get("metric_to_chart") or {}
        rows.append(["metric line -> on the chart (median s)", fmt(chart.get("median_s")), "-",
                     chart.get("error", "")[:60] if chart.get("error") else ""])
    data = load("data_pipeline")
    if data and data.get("ratio") is not None:
        rows.append([f"data: {data['settings']['rows']:,} rows normalised+blended+tokenised / plain datasets",
                     fmt(data["ratio"], 3), "<= 1.1", verdict(data["ratio"], 1.1)])
    chat = load("chat_latency")
    if chat:
        rows.append(["chat: studio / bare first text", fmt(chat["first_token_ratio"], 3), "<= 1.1",
                     verdict(chat["first_token_ratio"], 1.1)])
        if chat.get("tokens_per_cpu_s_ratio") is not None:
            rows.append(["chat: studio / bare first text, CPU time", fmt(chat["first_token_cpu_ratio"], 3), "<= 1.1",
                         verdict(chat["first_token_cpu_ratio"], 1.1)])
            rows.append(["chat: bare / studio tokens per CPU-s", fmt(chat["tokens_per_cpu_s_ratio"], 3), "<= 1.1",
                         verdict(chat["tokens_per_cpu_s_ratio"], 1.1)])
        rows.append(["chat: bare / studio tokens/s", fmt(chat["tokens_per_s_ratio"], 3), "<= 1.1",
                     verdict(chat["tokens_per_s_ratio"], 1.1)])
    for name, label in (("serve_latency", "~1M"), ("serve_latency_small", "~30M")):
        serve = (load(name) or {}).get("serve")
        if not serve:
            continue
        bare = serve["bare"]
        for side, how in (("raw", "plain httpx"), ("served", "openai client")):
            if side not in serve:  # a JSON from before the plain-httpx side
                continue
            first = serve[side]["first_token_ms"] / bare["first_token_ms"]
            speed = bare["tokens_per_s"] / serve[side]["tokens_per_s"]
            rows.append([f"serve ({label}, {how}) / bare: first text", fmt(first, 3), "<= 1.1", verdict(first, 1.1)])
            rows.append([f"serve ({label}, {how}): bare / served tokens/s", fmt(speed, 3), "<= 1.1",
                         verdict(speed, 1.1)])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="", help="comma-separated names: " + ", ".join(plan(False)))
    args = p.parse_args()
    steps = plan(args.quick)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(steps)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(steps)}")
    ran = {}
    for name, argv in steps.items():
        if not only or name in only:
            ran[name] = run(name, argv)
    rows = summary_rows(ran)
    print("=" * 78)
    print(table(["summary (ratios: studio / baseline unless named)", "value", "target", "verdict"], rows))
    for name in ("data_pipeline", "estimate_memory"):
        if name in ran:
            print(f"\n{name} ({ran[name]['status']}):")
            print("\n".join("  " + ln for ln in ran[name]["output"][-12:]) or "  (no output)")
    failed = [n for n, r in ran.items() if r["status"] not in ("ok", "missing")]
    if failed:
        print("\nfailed:", ", ".join(failed))
    path = write_json("summary", {"quick": args.quick, "rows": rows, "scripts": ran})
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
