"""How fast the studio's page comes up, and how fast a new metric reaches its chart.

    .venv/bin/python bench/ui_latency.py [--repeats 3] [--metrics 5] [--skip-browser]

1. Page served: time from process start to the first HTTP 200 of / for the studio
   (`python app.py`) and for a bare Gradio app (`import gradio`, one Blocks with a
   Markdown, launch), interleaved, median of --repeats.
2. Metric -> chart: the studio serves a runs folder holding one "running" run; Debian's
   Chromium (through Playwright, as in tests/browser.py) opens the Train tab on it; a line
   is appended to its metrics.jsonl and we time until the plotly chart holds that point
   (median of --metrics lines, written at different points of the UI's polling cycle).

Writes bench/results/ui_latency.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PYTHON, REPO, bench_env, interleaved, median, ratio, table, write_json  # noqa: E402

BARE_APP = """
import sys
import gradio as gr
with gr.Blocks() as demo:
    gr.Markdown("# bare")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""
PLOT = "document.querySelector('#loss-plot .js-plotly-plot')"
COUNT = f"(({PLOT} && {PLOT}.data && {PLOT}.data.length) ? {PLOT}.data[0].x.length : 0)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], port: int, env: dict, timeout: float = 300) -> tuple[subprocess.Popen, float]:
    """Start cmd in its own process group; return (process, seconds until / answered 200)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd[:3])} exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    r.read()
                    return proc, time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.05)
    stop_server(proc)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def studio_cmd(port: int, runs: Path) -> list[str]:
    return [PYTHON, str(REPO / "app.py"), "--port", str(port), "--runs-dir", str(runs)]


def page_served(repeats: int, env: dict, tmp: Path) -> dict:
    bare = tmp / "bare_app.py"
    bare.write_text(BARE_APP)

    def one(cmd_for):
        port = free_port()
        proc, took = start_server(cmd_for(port), port, env)
        stop_server(proc)
        return took

    def show(name, i, r):
        print(f"  round {i + 1} {name:<7} first 200 after {r:6.2f} s", flush=True)

    res = interleaved({"studio": lambda i: one(lambda p: studio_cmd(p, tmp / "runs-empty")),
                       "gradio": lambda i: one(lambda p: [PYTHON, str(bare), str(p)])}, repeats, show)
    return {"studio_s": median(res["studio"]), "bare_gradio_s": median(res["gradio"]),
            "ratio": ratio(median(res["studio"]), median(res["gradio"])), "all": res}


def fake_running_run(runs: Path) -> tuple[Path, subprocess.Popen]:
    """A run the UI shows as running, whose metrics we write by hand. Its "worker" is a
    sleeping stand-in whose command line names studio.worker (jobs.status checks that, so
    a reused pid is never taken for a live run); the caller stops it."""
    from studio import jobs
    from studio.presets import load_run

    stand_in = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(900)", "studio.worker"],
                                start_new_session=True)
    run_dir = jobs.create_run(load_run("quickstart"), runs)
    jobs.write_status(run_dir, state="running", pid=stand_in.pid, pgid=stand_in.pid, started=time.time(),
                      step=0, total=1000)
    (run_dir / "metrics.jsonl").touch()
    return run_dir, stand_in


def metric_to_chart(n: int, env: dict, tmp: Path) -> dict:
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return {"error": "Debian chromium is not installed (scripts/setup.sh --dev)"}
    from playwright.sync_api import sync_playwright

    from tests.browser import ARGS

    runs = tmp / "runs"
    run_dir, stand_in = fake_running_run(runs)
    port = free_port()
    latencies = []
    proc = None
    try:
        proc, _ = start_server(studio_cmd(port, runs), port, env)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Train").click()
            box = page.locator("#run-pick input").first
            box.click()
            box.fill(run_dir.name)
            page.locator("ul[role='listbox'] li", has_text=run_dir.name).first.click()
            page.wait_for_timeout(2000)
            for i in range(1, n + 1):
                time.sleep(0.37 * i % 1.0 + 0.3)  # land at different points of the polling cycle
                with open(run_dir / "metrics.jsonl", "a") as f:
                    written = time.time()
                    f.write(json.dumps({"step": i, "time": written, "elapsed": float(i), "kind": "train",
                                        "loss": 4.0 + i}) + "\n")
                page.wait_for_function(f"{COUNT} >= {i} && {PLOT}.data[0].y[{i - 1}] === {4.0 + i}",
                                       timeout=30_000, polling=20)
                latencies.append(time.time() - written)
                print(f"  metric {i}: on the chart after {latencies[-1]:.2f} s", flush=True)
            browser.close()
    finally:
        if proc is not None:
            stop_server(proc)
        stop_server(stand_in)
    return {"median_s": median(latencies), "max_s": max(latencies), "all": [round(x, 3) for x in latencies]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--metrics", type=int, default=5)
    p.add_argument("--skip-browser", action="store_true")
    args = p.parse_args()
    env = bench_env(None, GRADIO_ANALYTICS_ENABLED="False")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        tmp = Path(tmp)
        print("page served (process start -> first HTTP 200 of /):", flush=True)
        served = page_served(args.repeats, env, tmp)
        chart = None
        if not args.skip_browser:
            print("metric line written -> point on the chart:", flush=True)
            try:
                chart = metric_to_chart(args.metrics, env, tmp)
            except Exception as exc:  # noqa: BLE001 - report why, keep the page figures
                chart = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    rows = [["page served (studio app.py)", served["studio_s"]],
            ["page served (bare gradio Blocks)", served["bare_gradio_s"]],
            ["studio / bare", served["ratio"]]]
    if chart and "median_s" in chart:
        rows += [["metric -> chart, median", chart["median_s"]], ["metric -> chart, max", chart["max_s"]]]
    print()
    print(table([f"median of {args.repeats} (seconds)", "value"], rows))
    if chart and "error" in chart:
        print("metric -> chart not measured:", chart["error"])
    path = write_json("ui_latency", {"settings": vars(args), "page_served": served, "metric_to_chart": chart})
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
