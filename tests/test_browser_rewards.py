"""The Method tab's reward playground in a real headless browser: two completions, two
scores per component and in total, the right completion scored higher."""
from __future__ import annotations

import re

from studio.ui.app import AppSettings
from tests.browser import browser, serve


def test_playground_scores_two_completions_and_ranks_the_right_one_higher(tmp_path):
    right = '{"city": "Lima", "day": "Sunday", "tickets": 3}'
    wrong = '{"city": "Lima", "day": "Monday"}'
    with serve(AppSettings(runs_dir=str(tmp_path))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Method").click()
        page.get_by_text("Try the reward").click()
        page.locator("#playground-reward textarea, #playground-reward input").first.fill("json_valid, 2*json_match")
        page.locator("#playground-reference textarea, #playground-reference input").first.fill(right)
        page.locator("#playground-completions textarea").first.fill(f"{wrong}\n---\n{right}")
        page.get_by_role("button", name="Score").click()
        page.wait_for_function("document.querySelector('#playground-message')?.innerText.includes('Highest')",
                               timeout=20_000)
        assert "completion 2 (3)" in page.locator("#playground-message").inner_text()
        text = page.locator("#playground-table").inner_text()
        assert "json_match (x2)" in text and "json_valid" in text
        numbers = [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", text.split("json_match (x2)")[-1])]
        # wrong: valid 1, match 1/3, total 1 + 2/3; right: 1, 1, total 3
        assert 3.0 in numbers and 1.6667 in numbers and 0.3333 in numbers
