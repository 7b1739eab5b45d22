"""The Method tab in a real headless browser: the advisor's questions come pre-filled from
the other tabs, answering them highlights the path in the flowchart, a method that does
not suit the data gets a warning with its fix, and "Use this" fills the Method and Train
tabs from the recipe. The chart is screenshotted in the light and the dark theme."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from studio import advisor
from studio.presets import default_spec
from studio.spec import DataSource
from studio.ui import method_tab
from tests.browser import browser, serve

TAKEN = "[...document.querySelectorAll('#advisor-chart svg .node.taken')].map(g => g.dataset.node)"
BG = "getComputedStyle(document.querySelector('#advisor-chart svg rect.bg')).fill"
# preferences, pairs (from the Data tab), simplicity, for the default spec's new model
PREFERENCE_PATH = ["goal", "pref_data", "pair_priority", "dpo", "regime", "full_scratch"]


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
    want = advisor.recipe("dpo", "full", "tiny")  # a new model is in the tiny size class
    assert want["train.learning_rate"] != default.train.learning_rate  # or the fill would not show
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
        page.locator("#method-fix").click()  # KTO -> SFT, which trains on conversations
        page.wait_for_function("document.querySelector('#method-name input').value === 'sft'", timeout=15_000)
        page.wait_for_function("document.querySelector('#method-check')?.innerText.trim() === ''")

        # new data in the Data tab: the advisor's data question follows it
        page.get_by_role("tab", name="Data").click()
        page.locator("#data-sources textarea").fill("assets/data/arith_prefs_train.jsonl")
        page.get_by_role("tab", name="Method").click()
        page.wait_for_function("document.querySelector('#advisor-data-kind input').value.startsWith('preference')",
                               timeout=15_000)
        pick(page, "advisor-goal", "align to preferences")
        pick(page, "advisor-wants", "the simplest method that works")
        wait_path(page, PREFERENCE_PATH)
        assert page.locator("#advisor-chart svg .edge.taken").count() == len(PREFERENCE_PATH) - 1
        advice = page.locator("#advisor-advice").inner_text()
        assert "Recommended: Direct preference optimisation" in advice and "Pretrain it first" in advice
        page.locator("#advisor-chart").screenshot(path=str(shots / "chart-light.png"))
        light_bg = page.evaluate(BG)

        page.get_by_role("button", name="Use this").click()
        # first the fields it would change, old -> new (#20.7); nothing changes until confirmed
        page.wait_for_function("document.querySelector('#advisor-used')?.innerText.includes('→')", timeout=15_000)
        shown = page.locator("#advisor-used").inner_text()
        assert "method.name" in shown
        new_value = {m.group(1): m.group(2) for m in re.finditer(r"(train\.\w+): \S+ → (\S+)", shown)}
        assert page.locator("#method-name input").input_value() != "dpo"
        page.get_by_role("button", name="Apply these changes").click()
        page.wait_for_function("document.querySelector('#method-name input').value === 'dpo'", timeout=15_000)
        page.wait_for_function("document.querySelector('#advisor-used')?.innerText.includes('Filled')")
        assert page.locator("#method-check").inner_text().strip() == ""  # DPO on pairs: nothing to warn
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Training settings").click()
        lr = page.locator("#train-learning-rate input").first
        lr.wait_for()
        assert float(lr.input_value()) == pytest.approx(want["train.learning_rate"])
        # batch and steps come from the data's rows (#19): the values the diff showed were applied
        batch = page.locator("#train-batch-size input").first.input_value()
        assert batch == new_value.get("train.batch_size", batch)
        assert page.locator("#train-max-steps input").first.input_value() == new_value["train.max_steps"]

        # Gradio's dark theme is the class "dark" on the body (what ?__theme=dark sets)
        page.get_by_role("tab", name="Method").click()
        page.evaluate("document.body.classList.add('dark')")
        assert page.evaluate(BG) != light_bg  # the chart follows the page into dark mode
        page.locator("#advisor-chart").screenshot(path=str(shots / "chart-dark.png"))
        page.screenshot(path=str(shots / "method-dark.png"), full_page=True)
    if os.environ.get("STUDIO_SHOTS"):  # keep them to look at
        shutil.copytree(shots, os.environ["STUDIO_SHOTS"], dirs_exist_ok=True)
