"""The studio's core loop in a real headless browser: five tabs, Start trains the
built-in default in a background process, the loss chart fills in live, the run
finishes, and Chat streams a reply from the trained model. Then Stop, mid-run, leaves
no process of the run alive."""
from __future__ import annotations

import os
import time

import pytest

from studio import jobs
from tests.browser import browser, serve, set_number

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLOT_POINTS = ("g=document.querySelector('#loss-plot .js-plotly-plot');"
               "g && g.data && g.data.length && g.data[0].x.length >= {n}")



def test_default_run_trains_charts_and_chats(tmp_path, runs):
    from studio.ui.app import AppSettings

    shots = tmp_path / "shots"
    shots.mkdir()
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        for tab in ("Model", "Data", "Method", "Train", "Chat"):
            page.get_by_role("tab", name=tab).wait_for(timeout=30_000)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Training settings").click()
        set_number(page, "train-max-steps", 60)  # shorter than the default, for CI time
        page.get_by_role("button", name="Start", exact=True).click()
        page.wait_for_function(PLOT_POINTS.format(n=3), timeout=120_000)
        page.screenshot(path=str(shots / "chart-live.png"))
        run_id = [r for r in os.listdir(runs) if not r.startswith(".")][0]
        # the chart grows while the run goes on: poll the count again
        first = page.evaluate("document.querySelector('#loss-plot .js-plotly-plot').data[0].x.length")
        page.wait_for_function(
            f"document.querySelector('#loss-plot .js-plotly-plot').data[0].x.length > {first}", timeout=120_000)
        page.wait_for_function("document.querySelector('#progress-info')?.dataset.state === 'completed'",
                               timeout=240_000)
        assert page.locator("#progress-info").get_attribute("data-step") == "60"
        losses = page.evaluate("document.querySelector('#loss-plot .js-plotly-plot').data[0].y")
        assert losses[-1] < losses[0] * 0.6, losses
        page.screenshot(path=str(shots / "chart-done.png"))

        page.get_by_role("tab", name="Chat").click()
        model_box = page.locator("#chat-model input").first
        model_box.fill(run_id)
        model_box.press("Enter")
        page.locator("#chat-input textarea").fill("What is 3 + 4?")
        page.get_by_role("button", name="Send").click()
        bot = page.locator("#chatbot [data-testid='bot']").last
        bot.wait_for(timeout=120_000)
        page.wait_for_function(
            "(() => {const b=[...document.querySelectorAll(\"#chatbot [data-testid='bot']\")];"
            " return b.length && b[b.length-1].innerText.trim().length > 0})()", timeout=120_000)
        page.screenshot(path=str(shots / "chat.png"))
        assert bot.inner_text().strip()


def test_stop_mid_run_leaves_no_process(runs):
    from studio.ui.app import AppSettings

    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Training settings").click()
        set_number(page, "train-max-steps", 5000)
        page.get_by_role("button", name="Start", exact=True).click()
        page.wait_for_function("document.querySelector('#progress-info')?.dataset.state === 'running'",
                               timeout=120_000)
        run_id = [r for r in os.listdir(runs) if not r.startswith(".")][0]
        pgid = jobs.read_status(runs / run_id)["pgid"]
        assert jobs.group_members(pgid)
        page.get_by_role("button", name="Stop", exact=True).click()
        page.wait_for_function("document.querySelector('#progress-info')?.dataset.state === 'stopped'",
                               timeout=60_000)
        deadline = time.time() + 10
        while jobs.group_members(pgid) and time.time() < deadline:
            time.sleep(0.2)
        assert jobs.group_members(pgid) == []
