"""The Evaluate tab in a real headless browser: a short quickstart run against its scratch
base ("Did it learn?"), started from the tab as a background evaluation; the scorecard
and the A/B example table appear with both models' numbers and replies."""
from __future__ import annotations

from studio.presets import load_run
from studio.ui.app import AppSettings
from tests.browser import browser, serve, set_number
from tests.conftest import run_in_process


def test_evaluate_a_run_against_its_base_from_the_tab(tmp_path):
    runs = tmp_path / "runs"
    run_dir = run_in_process(load_run("quickstart").with_overrides(["train.max_steps=20", "train.eval_every=0"]),
                             runs)
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Evaluate").click()
        pick = page.locator("#eval-run input").first
        pick.click()
        pick.fill(run_dir.name)
        pick.press("Enter")
        page.locator("#eval-data textarea, #eval-data input").first.fill("assets/data/arith_sft_test.jsonl")
        set_number(page, "eval-max-examples", 8)
        set_number(page, "eval-max-new", 4)
        page.get_by_role("button", name="Evaluate").click()
        page.wait_for_function("document.querySelector('#eval-scorecard')?.innerText.includes('exact_match')",
                               timeout=180_000)
        card = page.locator("#eval-scorecard").inner_text()
        assert f"base of {run_dir.name}" in card and "held-out loss" in card and "perplexity" in card
        assert "completed" in page.locator("#eval-progress").inner_text()
        page.wait_for_function("document.querySelector('#eval-examples')?.innerText.includes('What is')",
                               timeout=30_000)
        table = page.locator("#eval-examples").inner_text()
        assert "A output" in table and "B output" in table
        assert (run_dir / "eval").is_dir() and len(list((run_dir / "eval").iterdir())) == 1
        summary = next((run_dir / "eval").iterdir()) / "summary.json"
        assert summary.is_file()
        page.wait_for_function("document.querySelector('#eval-chart .js-plotly-plot')?.data?.length >= 2",
                               timeout=30_000)
