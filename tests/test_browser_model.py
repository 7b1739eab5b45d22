"""The Model tab in a real headless browser: editing the size redraws the exact parameter
count and the memory bar without a reload, an impossible shape is reported next to its
field and disables Start with the reason, and a preset fills the fields; a published
model's preset shows its size without a download, rope scaling its longer context, and an
uncached hub id the hub's message on its field. Plus the tab's
handlers without a browser: an existing model from its config alone, a hub id that is not
cached, and a tokenizer trained on the Data tab's sources."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from studio import estimate
from studio.presets import default_spec, load_model_preset
from studio.ui import model_tab
from tests.browser import browser, serve, set_number

GIB = 1024**3
TOTAL = "document.querySelector('#param-total')?.innerText.replaceAll(',', '')"
WEIGHTS = ("(() => { const g = document.querySelector('#model-memory-bar .js-plotly-plot');"
           " return g && g.data ? g.data[0].x[0] : null; })()")


def expected(**model):
    spec = default_spec()
    for key, value in model.items():
        setattr(spec.model, key, value)
    return spec, estimate.count_parameters(spec.model)["total"]


def wait_total(page, total: int) -> None:
    page.wait_for_function(f"{TOTAL} === '{total}'", timeout=15_000)


@pytest.mark.browser
def test_live_count_memory_bar_problems_and_preset(tmp_path):
    from studio.ui.app import AppSettings

    shots = tmp_path / "shots"
    shots.mkdir()
    with serve(AppSettings(runs_dir=str(tmp_path / "runs"))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
        _, total = expected()
        wait_total(page, total)
        page.wait_for_function(f"{WEIGHTS} !== null")
        weights_before = page.evaluate(WEIGHTS)

        set_number(page, "model-d-model", 256)
        spec, total = expected(d_model=256)
        wait_total(page, total)
        set_number(page, "model-n-layers", 6)
        spec, total = expected(d_model=256, n_layers=6)
        wait_total(page, total)
        # the bar follows: weights in bf16 (precision auto on a GPU) of the new shape
        want = estimate.estimate(spec, dtype="bf16")["memory_bytes"]["weights"] / GIB
        page.wait_for_function(f"Math.abs({WEIGHTS} - {want}) < 1e-9")
        assert want > weights_before
        assert "Llama" in page.locator("#model-summary").inner_text()
        page.screenshot(path=str(shots / "model-valid.png"), full_page=True)

        # d_model not divisible by n_heads: the message sits under the size row and in the
        # field's own info line; the Train tab's Start is disabled and says why
        set_number(page, "model-d-model", 130)
        page.wait_for_function("document.querySelector('#model-problems')?.innerText.includes('not divisible')",
                               timeout=15_000)
        assert "model.d_model" in page.locator("#model-problems").inner_text()
        assert "not divisible by n_heads" in page.locator("#model-d-model").inner_text()
        page.screenshot(path=str(shots / "model-invalid.png"), full_page=True)
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function("document.querySelector('#problems')?.innerText.includes('model.d_model')",
                               timeout=15_000)
        assert page.locator("#start").is_disabled()
        assert "not divisible by n_heads" in page.locator("#problems").inner_text()

        # a preset fills the fields (and clears the problem)
        page.get_by_role("tab", name="Model").click()
        page.locator("#model-preset input").first.click()
        page.get_by_role("option", name="llama-100m", exact=True).click()
        preset = load_model_preset("llama-100m")
        page.wait_for_function(f"document.querySelector('#model-d-model input').value === '{preset.d_model}'",
                               timeout=15_000)
        assert int(page.locator("#model-n-layers input").first.input_value()) == preset.n_layers
        assert int(page.locator("#model-n-heads input").first.input_value()) == preset.n_heads
        wait_total(page, estimate.count_parameters(preset)["total"])
        page.wait_for_function("!document.querySelector('#model-problems')?.innerText.trim()")  # hidden or empty
        assert "not divisible" not in page.locator("#model-d-model").inner_text()
        page.locator("#model-memory-bar").screenshot(path=str(shots / "memory-bar.png"))
        page.screenshot(path=str(shots / "model-preset.png"), full_page=True)
        assert page.evaluate("window.__sameDocument") is True
    if os.environ.get("STUDIO_SHOTS"):
        shutil.copytree(shots, os.environ["STUDIO_SHOTS"], dirs_exist_ok=True)


CONTEXT = "document.querySelector('#context-tokens')?.innerText.replaceAll(',', '')"


@pytest.mark.browser
def test_published_preset_rope_context_and_uncached_hub_id(tmp_path, monkeypatch):
    """Pick Qwen2.5-0.5B: its exact size (0.49B) with nothing downloaded; yarn x2 doubles
    the context the estimate shows; an id neither cached nor fetchable (offline) gets the
    hub's message on the name_or_path field after Enter."""
    from studio.ui.app import AppSettings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with serve(AppSettings(runs_dir=str(tmp_path / "runs"))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        _, total = expected()
        wait_total(page, total)
        page.locator("#model-hub-preset input").first.click()
        page.get_by_role("option", name="Qwen2.5-0.5B · 0.49B").click()
        wait_total(page, 494_032_768)
        assert "0.49B" in page.locator("#model-summary").inner_text()
        name = page.locator("#model-name-or-path textarea, #model-name-or-path input").first
        assert name.input_value() == "Qwen/Qwen2.5-0.5B"
        page.wait_for_function(f"{CONTEXT} === '32768'", timeout=15_000)

        page.get_by_text("Long context (an existing model", exact=False).click()
        page.locator("#model-rope-scaling input").first.click()
        page.get_by_role("option", name="yarn", exact=True).click()
        set_number(page, "model-rope-factor", 2)
        page.wait_for_function(f"{CONTEXT} === '65536'", timeout=15_000)
        assert "yarn ×2 of the native 32,768" in page.locator("#model-summary").inner_text()
        wait_total(page, 494_032_768)  # more context, same weights
        page.screenshot(path=str(tmp_path / "model-rope.png"), full_page=True)

        name.fill("nobody-here/not-cached")
        name.press("Enter")
        page.wait_for_function("document.querySelector('#model-name-or-path')?.innerText"
                               ".includes('not in the local Hugging Face cache')", timeout=15_000)
        assert "HF_HUB_OFFLINE" in page.locator("#model-name-or-path").inner_text()
        assert "model.name_or_path" in page.locator("#model-problems").inner_text()


def test_existing_model_from_config_alone(tmp_path):
    spec = default_spec()
    config = estimate.spec_config(spec.model, estimate.tokenizer_vocab_size(spec.model.tokenizer))
    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))  # no weights in the folder at all
    spec.model.source, spec.model.name_or_path = "pretrained", str(folder)
    summary, problems, figure, rows, verdict = model_tab.compute(spec, 16, "16 GB: T4", 65, 0.4, 1e8)
    assert problems == "" and figure is not None
    want = estimate.count_parameters(config)["total"]
    assert f"<span id='param-total'>{want:,}</span>" in summary
    assert "Fits on 16 GB" in verdict

    spec.model.name_or_path = "nobody-here/not-a-cached-model"
    summary, _, figure, _, _ = model_tab.compute(spec, 16, "16 GB: T4", 65, 0.4, 1e8)
    assert figure is None and "not in the local hub cache" in summary


def test_train_tokenizer_on_data_sources(tmp_path):
    sources = "assets/data/corpus_train.jsonl"
    folder, message = model_tab.train_new_tokenizer(sources, 400, "arith-bpe", str(tmp_path / "runs"))
    assert folder == str(tmp_path / "runs" / "tokenizers" / "arith-bpe")
    assert estimate.tokenizer_vocab_size(folder) == 400 and "400 tokens" in message
    # the model follows it: vocab_size empty means the tokenizer's size
    spec = default_spec()
    spec.model.tokenizer, spec.model.vocab_size = folder, None
    assert estimate.inventory(spec.model).info["vocab"] == 400
    with pytest.raises(ValueError, match="tokenizer name"):
        model_tab.train_new_tokenizer(sources, 400, "../escape", str(tmp_path / "runs"))
    with pytest.raises(ValueError, match="data.sources"):
        model_tab.train_new_tokenizer("", 400, "empty", str(tmp_path / "runs"))


def test_gpu_peak_from_nvidia_smi_name():
    assert model_tab.peak_tflops("NVIDIA H200") == 989.0
    assert model_tab.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert model_tab.peak_tflops("NVIDIA A10G") == 125.0
    assert model_tab.peak_tflops("Tesla T4") == 65.0
    assert model_tab.peak_tflops("Some Future GPU", unknown=1.0) == 1.0
