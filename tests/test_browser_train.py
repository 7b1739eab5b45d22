"""The Train tab in a real browser, one story with two runs (each worker start costs
~15 s of imports, so the phases share them):

- start a long run; its chart grows, peak memory shows; x axis tokens; reload the page
  mid-run: it reattaches and the chart grows again;
- a second browser context picks the same run from the list but does not see the first
  one's unsaved form state; its own Start queues behind the first run (position shown);
  a metric appended by hand to the queued run's metrics.jsonl reaches its chart fast;
- stop the queued run, "stop and save" the first (checkpoint + final/, no process left),
  resume it with more steps: it continues from the checkpoint's step and completes;
- history, compare (overlay), export (YAML + CLI), use as base, delete with confirmation.
"""
from __future__ import annotations

import json
import time

import pytest

from studio import jobs
from studio.metrics import read_all
from tests.browser import browser, serve, set_number

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLOT = "document.querySelector('#loss-plot .js-plotly-plot')"
COUNT = f"(({PLOT} && {PLOT}.data && {PLOT}.data.length) ? {PLOT}.data[0].x.length : 0)"
STATE = "document.querySelector('#progress-info')?.dataset.state"


def count(page) -> int:
    return page.evaluate(COUNT)


def wait_state(page, state, timeout=120_000):
    page.wait_for_function(f"{STATE} === '{state}'", timeout=timeout)


def no_process_left(pgid) -> bool:
    deadline = time.time() + 15
    while jobs.group_members(pgid) and time.time() < deadline:
        time.sleep(0.2)
    return jobs.group_members(pgid) == []


def open_train(page, url):
    page.goto(url)
    page.get_by_role("tab", name="Train").click()


def pick(page, elem_id, text):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(text)
    page.locator("ul[role='listbox'] li", has_text=text).first.click()



def test_train_tab_story(runs):
    from studio.ui.app import AppSettings

    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        ctx_a, ctx_b = b.new_context(viewport={"width": 1400, "height": 1100}), b.new_context()
        a = ctx_a.new_page()
        open_train(a, url)
        a.get_by_text("Training settings").click()
        set_number(a, "train-max-steps", 100_000)
        a.locator("#name textarea").fill("alpha")
        a.get_by_role("button", name="Start", exact=True).click()
        a.wait_for_function(f"{COUNT} >= 3", timeout=150_000)
        run_a = runs / next(p for p in runs.iterdir() if p.is_dir())
        assert jobs.read_status(run_a)["state"] == "running"
        a.wait_for_function("Number(document.querySelector('#progress-info')?.dataset.peak) > 0", timeout=30_000)
        # x axis in tokens: the same points, placed by tokens seen
        a.locator("#x-axis").get_by_text("tokens").click()
        a.wait_for_function(f"{PLOT}.data[0].x[1] > 100", timeout=30_000)
        a.locator("#x-axis").get_by_text("step").click()

        # reload mid-run: the tab reattaches and keeps growing
        a.reload()
        a.get_by_role("tab", name="Train").click()
        wait_state(a, "running", 60_000)
        a.wait_for_function(f"{COUNT} >= 3", timeout=60_000)
        after_reload = count(a)
        a.wait_for_function(f"{COUNT} > {after_reload}", timeout=60_000)
        a.locator("#name textarea").fill("unsaved-draft")  # typed, never started

        # a second browser: same run in the list, not the first one's form
        bp = ctx_b.new_page()
        open_train(bp, url)
        pick(bp, "run-pick", run_a.name)
        bp.wait_for_function(f"{COUNT} >= 3", timeout=60_000)
        assert bp.locator("#name textarea").input_value() != "unsaved-draft"
        # its own Start waits for the device
        bp.get_by_role("button", name="Start", exact=True).click()
        bp.wait_for_function("document.querySelector('#progress-info')?.dataset.queue === '1'", timeout=90_000)
        assert "position 1 in the queue" in bp.locator("#progress-info").inner_text()
        run_b = next(p for p in runs.iterdir() if p.is_dir() and p != run_a)
        assert jobs.status(run_b)["state"] == "queued"

        # a metric written to the file reaches the chart within ~1.5 s (median of 3)
        bp.wait_for_function(f"{COUNT} === 0", timeout=30_000)
        latencies = []
        for i in range(1, 4):
            time.sleep(0.7)  # land at different points of the polling cycle
            with open(run_b / "metrics.jsonl", "a") as f:
                written = time.time()
                f.write(json.dumps({"step": i, "time": written, "elapsed": 0.0, "kind": "train",
                                    "loss": 4.0 + i}) + "\n")
            bp.wait_for_function(f"{COUNT} === {i} && {PLOT}.data[0].y[{i - 1}] === {4.0 + i}",
                                 timeout=10_000, polling=50)
            latencies.append(time.time() - written)
        print("metric -> chart latency (s):", [round(x, 2) for x in latencies])
        assert sorted(latencies)[1] < 1.5, latencies

        bp.get_by_role("button", name="Stop", exact=True).click()
        wait_state(bp, "stopped", 60_000)
        assert no_process_left(jobs.read_status(run_b)["pgid"])

        # stop and save: a checkpoint and final/, nothing left running
        before = jobs.read_status(run_a)["step"]
        a.get_by_role("button", name="Stop and save").click()
        wait_state(a, "stopped", 90_000)
        assert no_process_left(jobs.read_status(run_a)["pgid"])
        ckpt = jobs.latest_checkpoint(run_a)
        assert ckpt is not None and (ckpt / "optimizer.pt").exists()
        assert (run_a / "final" / "model.safetensors").exists()
        stopped_at = int(ckpt.name.split("-")[1])
        assert stopped_at >= before
        a.wait_for_function("document.querySelector('#train-message')?.innerText.includes('final/ saved')",
                            timeout=60_000)

        # resume with optimizer state and a new max_steps: continues from the checkpoint
        shown = count(a)
        set_number(a, "resume-steps", stopped_at + 6)
        a.get_by_role("button", name="Resume").click()
        wait_state(a, "completed", 150_000)
        a.wait_for_function(f"{COUNT} > {shown}", timeout=30_000)
        assert a.locator("#progress-info").get_attribute("data-step") == str(stopped_at + 6)
        steps = [r["step"] for r in read_all(run_a) if r["kind"] == "train"]
        resumed = steps[steps.index(max(s for s in steps if s <= stopped_at)) + 1:]
        assert resumed and min(resumed) > stopped_at, (stopped_at, steps)  # not from step 0 again

        # history and compare
        a.get_by_role("button", name="↻ Runs").click()
        table = a.locator("#run-history")
        a.wait_for_function(f"document.querySelector('#run-history').innerText.includes('{run_b.name}')")
        assert "completed" in table.inner_text() and "stopped" in table.inner_text()
        for rid in (run_a.name, run_b.name):
            pick(a, "compare-pick", rid)
        # one run alone already draws three traces: wait until both runs are on the plot
        a.wait_for_function(f"(g => g && g.data && g.data.some(t => t.name.includes('{run_a.name}'))"
                            f" && g.data.some(t => t.name.includes('{run_b.name}')))"
                            "(document.querySelector('#compare-plot .js-plotly-plot'))", timeout=30_000)
        names = a.evaluate("document.querySelector('#compare-plot .js-plotly-plot').data.map(t => t.name)")
        assert any(run_a.name in n for n in names) and any(run_b.name in n for n in names), names

        # export: YAML download and the CLI command
        a.locator("#export-spec").click()
        a.wait_for_function("document.querySelector('#cli-command')?.innerText.includes('python -m studio train')",
                            timeout=30_000)
        assert "train.max_steps=" in a.locator("#cli-command").inner_text()
        a.locator("#export-file a").first.wait_for(timeout=30_000)

        # use as base: the Model tab now starts from this run
        a.locator("#use-as-base").click()
        a.wait_for_function("document.querySelector('#train-message')?.innerText.includes('pretrained')")
        a.get_by_role("tab", name="Model").click()
        assert a.locator("#model-name-or-path textarea").input_value() == str(run_a)
        assert a.locator("#model-source input").first.input_value() == "pretrained"
        a.get_by_role("tab", name="Train").click()

        # delete with confirmation
        pick(a, "run-pick", run_b.name)
        a.locator("#delete-run").click()
        a.locator("#delete-confirm").wait_for(timeout=10_000)
        assert run_b.exists()  # asking is not deleting
        a.locator("#delete-confirm").click()
        a.wait_for_function(f"!document.querySelector('#run-history').innerText.includes('{run_b.name}')",
                            timeout=30_000)
        assert not run_b.exists() and run_a.exists()
