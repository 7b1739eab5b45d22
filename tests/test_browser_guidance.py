"""Guidance and state (#20.8, 9, 12) in a real browser: the first-visit banner is
dismissed once per browser, the Model tab's time estimate speaks of this CPU when there
is no GPU, a run-state header shows on every tab, and a spec is saved and loaded back
(from a previous run or a YAML file) instead of typed twice."""
from __future__ import annotations

import pytest

from studio.hardware import detected_gpu
from studio.presets import default_spec
from studio.ui.app import AppSettings
from tests.browser import browser, serve
from tests.test_browser_newcomer import fake_run, runs  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser]


def test_banner_is_dismissed_once_per_browser(runs):  # noqa: F811
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        ctx = b.new_context()
        page = ctx.new_page()
        page.goto(url)
        page.locator("#welcome").wait_for(timeout=15_000)
        page.locator("#welcome-dismiss").click()
        page.locator("#welcome").wait_for(state="hidden", timeout=10_000)
        page.reload()
        page.locator("#run-header-info").wait_for(timeout=15_000)
        page.wait_for_timeout(1500)
        assert not page.locator("#welcome").is_visible()
        fresh = b.new_context().new_page()  # another browser has not seen it
        fresh.goto(url)
        fresh.locator("#welcome").wait_for(timeout=15_000)


@pytest.mark.skipif(detected_gpu() is not None, reason="the CPU estimate is for machines without a GPU")
def test_time_estimate_speaks_of_this_cpu_and_header_shows_on_every_tab(runs):  # noqa: F811
    run = fake_run(runs, "measured", state="completed", losses=[2.0, 1.8])
    lines = [{"step": i, "kind": "train", "loss": 1.5, "tokens_per_second": 5000.0 + i} for i in range(1, 6)]
    with open(run / "metrics.jsonl", "a") as f:
        import json

        f.write("".join(json.dumps(r) + "\n" for r in lines))
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        verdict = page.locator("#model-verdict")
        verdict.get_by_text("this CPU").first.wait_for(timeout=30_000)
        text = verdict.inner_text()
        assert "RTX" not in text and "5,003 tokens/s" in text, text
        assert "CPU: this machine" in page.locator("#model-gpu input").input_value()
        page.wait_for_function(f"document.querySelector('#run-header-info')?.dataset.run === '{run.name}'",
                               timeout=15_000)  # the newest run, shown on load
        for tab in ("Data", "Method", "Train", "Chat"):
            page.get_by_role("tab", name=tab, exact=True).click()
            header = page.locator("#run-header-info")
            assert header.is_visible() and run.name in header.inner_text() and "completed" in header.inner_text()


def test_a_spec_is_loaded_from_a_run_or_a_file_and_saved(tmp_path, runs):  # noqa: F811
    fake_run(runs, "earlier", state="completed", losses=[2.0])
    yaml = tmp_path / "mine.yaml"
    default_spec().with_overrides(["name=from-file", "train.max_steps=123"]).save(yaml)
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Save or load a spec (YAML)").click()
        box = page.locator("#spec-run input")
        box.click()
        page.locator("ul[role='listbox'] li", has_text="earlier").first.click()
        page.locator("#spec-load-run").click()
        page.wait_for_function("document.querySelector('#name textarea').value === 'earlier'", timeout=15_000)
        page.get_by_text("Training settings").click()
        assert page.locator("#train-max-steps input").input_value() == "100"

        with page.expect_file_chooser() as chooser:
            page.locator("#spec-upload").click()
        chooser.value.set_files(str(yaml))
        page.wait_for_function("document.querySelector('#name textarea').value === 'from-file'", timeout=15_000)
        assert page.locator("#train-max-steps input").input_value() == "123"

        page.locator("#spec-save").click()
        page.locator("#spec-file a").first.wait_for(timeout=15_000)
        assert "from-file" in page.locator("#spec-file").inner_text()


def test_a_refusal_names_the_tab_of_the_field(runs):  # noqa: F811
    from tests.browser import set_number

    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        set_number(page, "model-d-model", 130)  # not divisible by n_heads 4
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function("document.querySelector('#problems')?.innerText.includes('model.d_model')",
                               timeout=30_000)
        assert "Model tab" in page.locator("#problems").inner_text()
        assert page.locator("#start").is_disabled()
