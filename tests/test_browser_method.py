"""The Method tab in a real headless browser: the advisor's questions come pre-filled from
the other tabs, answering them highlights the path in the flowchart, a method that does
not suit the data gets a warning with its fix, and "Use this" fills the Method and Train
tabs from the recipe. The chart is screenshotted in the light and the dark theme."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from studio import advisor
from studio.presets import default_spec
from studio.spec import DataSource
from studio.ui import method_tab
from tests.browser import browser, serve, set_number

TAKEN = "[...document.querySelectorAll('#advisor-chart svg .node.taken')].map(g => g.dataset.node)"
BG = "getComputedStyle(document.querySelector('#advisor-chart svg rect.bg')).fill"
# preferences, pairs, simplicity, an existing model that fits in full on 80 GB
PREFERENCE_PATH = ["goal", "pref_data", "pair_priority", "dpo", "regime", "memory", "full"]


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def wait_path(page, path: list[str]) -> None:
    """Until the chart highlights exactly these boxes; on a timeout, say which it shows."""
    try:
        page.wait_for_function(f"want => JSON.stringify({TAKEN}) === want", arg=json.dumps(path, separators=(",", ":")),
                               timeout=15_000)
    except PlaywrightTimeout:
        assert page.evaluate(TAKEN) == path


def test_inferred_answers_and_choice_check():
    spec = default_spec()  # a new model trained on the shipped conversations
    answers, note = method_tab.inferred(spec, 16)
    assert (answers.data_kind, answers.from_scratch, answers.model_is_base) == ("conversation", True, True)
    assert answers.data_rows and answers.data_rows > 1000 and "arith_sft_train" in note
    assert answers.device_memory_bytes == 16 * advisor.GIB
    spec.data.sources = [DataSource(kind="file", path="assets/data/arith_prefs_train.jsonl")]
    assert method_tab.inferred(spec, None)[0].data_kind == "preference"

    line, fix = method_tab.check_line("dpo", "conversation", "exact_match")
    assert "preference pairs" in line and "Fix" in line and fix == {"method.name": "sft"}
    line, fix = method_tab.check_line("grpo", "prompt", "")
    assert "reward" in line and fix == {"method.reward": "exact_match"}
    assert method_tab.check_line("dpo", "preference", "") == ("", {})

    headers, rows = method_tab.comparison_rows()
    assert [r[0] for r in rows] == list(advisor.REGISTRY) and "typical LR" in headers


@pytest.mark.browser
def test_advisor_highlights_path_and_use_this_fills_tabs(tmp_path):
    from studio.ui.app import AppSettings

    shots = tmp_path / "shots"
    shots.mkdir()
    default = default_spec()
    want = advisor.recipe("dpo", "full", advisor.size_bucket(advisor.infer_answers(default).model_size_params))
    assert want["train.learning_rate"] != default.train.learning_rate  # or the fill would not show
    start = time.monotonic()
    with serve(AppSettings(runs_dir=str(tmp_path / "runs"))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Method").click()
        # pre-filled from the Data and Model tabs: conversations, a new model -> SFT, full
        wait_path(page, ["goal", "sft", "regime", "full_scratch"])
        assert "conversation" in page.locator("#advisor-data-kind input").first.input_value()

        # the person's own choice disagrees with the data: a warning with the fix
        pick(page, "method-name", "kto")
        page.wait_for_function("document.querySelector('#method-check')?.innerText.includes('Fix')")
        assert "good/bad" in page.locator("#method-check").inner_text()
        assert page.locator("#method-fix").is_visible()

        pick(page, "advisor-goal", "align to preferences")
        pick(page, "advisor-data-kind", "preference pairs: prompt, chosen, rejected")
        pick(page, "advisor-wants", "the simplest method that works")
        pick(page, "advisor-from-scratch", "no")
        pick(page, "advisor-model-is-base", "no")
        set_number(page, "advisor-device-memory-bytes", 80)
        wait_path(page, PREFERENCE_PATH)
        assert page.locator("#advisor-chart svg .edge.taken").count() == len(PREFERENCE_PATH) - 1
        assert "Recommended: Direct preference optimisation" in page.locator("#advisor-advice").inner_text()
        page.locator("#advisor-chart").screenshot(path=str(shots / "chart-light.png"))
        light_bg = page.evaluate(BG)

        page.get_by_role("button", name="Use this").click()
        page.wait_for_function("document.querySelector('#method-name input').value === 'dpo'", timeout=15_000)
        page.wait_for_function("document.querySelector('#advisor-used')?.innerText.includes('Filled')")
        assert page.locator("#method-check").inner_text().strip() == ""  # DPO on pairs: nothing to warn
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Training settings").click()
        lr = page.locator("#train-learning-rate input").first
        lr.wait_for()
        assert float(lr.input_value()) == pytest.approx(want["train.learning_rate"])
        assert int(page.locator("#train-batch-size input").first.input_value()) == want["train.batch_size"]
        assert int(page.locator("#train-max-steps input").first.input_value()) == want["train.max_steps"]
        page.screenshot(path=str(shots / "train-filled.png"), full_page=True)

        dark = b.new_page(viewport={"width": 1400, "height": 1000})
        dark.goto(url + "/?__theme=dark")
        dark.get_by_role("tab", name="Method").click()
        wait_path(dark, ["goal", "sft", "regime", "full_scratch"])
        assert dark.evaluate("document.body.classList.contains('dark')")
        assert dark.evaluate(BG) != light_bg  # the chart follows the page into dark mode
        dark.locator("#advisor-chart").screenshot(path=str(shots / "chart-dark.png"))
        dark.screenshot(path=str(shots / "method-dark.png"), full_page=True)
    if os.environ.get("STUDIO_SHOTS"):  # keep them to look at
        shutil.copytree(shots, os.environ["STUDIO_SHOTS"], dirs_exist_ok=True)
    assert time.monotonic() - start < 45
