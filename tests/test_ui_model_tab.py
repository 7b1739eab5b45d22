"""The Model tab's handlers without a browser (#25.5-7): a typed hub id resolves from a
local Hugging Face cache (built here as the hub lays it out, HF_HUB_OFFLINE=1), fetches
config.json alone when online, and an id that is neither cached nor fetchable puts the
HubError's message on the field; a published model's preset gives its exact size with no
download; rope scaling multiplies the context the estimate shows."""
from __future__ import annotations

import json
from pathlib import Path

from studio import estimate
from studio.presets import default_spec, model_presets
from studio.spec import ModelSpec
from studio.ui import model_tab
from tests.test_hub_offline import COMMIT_A, COMMIT_B, cache, put_in_cache  # noqa: F401 (cache: the fixture)

KNOBS = ("16 GB: T4", 16, 65, 0.4, 1e8)
PATHS = model_tab.PATHS + model_tab.COST_PATHS


def values_of(spec) -> list:
    out = []
    for path in PATHS:
        node = spec
        for part in path.split("."):
            node = getattr(node, part)
        out.append(node)
    return out


def pretrained(name: str, **model):
    spec = default_spec()
    spec.model = ModelSpec(source="pretrained", name_or_path=name, **model)
    return spec


def view(spec, hub_state=None):
    (summary, problems_text, figure, rows, verdict), problems = model_tab.estimate_view(
        PATHS, values_of(spec), hub_state, None, KNOBS)
    return summary, problems_text, figure, problems


def total_in(summary: str) -> int:
    return int(summary.split("<span id='param-total'>")[1].split("<")[0].replace(",", ""))


def tiny_config(layers: int) -> dict:
    spec = default_spec()
    spec.model.n_layers = layers
    return estimate.spec_config(spec.model, estimate.tokenizer_vocab_size(spec.model.tokenizer))


def test_hub_id_and_revision_from_the_local_cache(cache):
    two, five = tiny_config(2), tiny_config(5)
    put_in_cache(cache, "model", "org/tiny", {"config.json": json.dumps(two).encode()}, COMMIT_A)
    put_in_cache(cache, "model", "org/tiny", {"config.json": json.dumps(five).encode()}, COMMIT_B, ref=None)
    for text, config in (("org/tiny", two), (f"org/tiny@{COMMIT_B}", five)):
        state = model_tab.check_hub_id("pretrained", text)
        assert state == {"text": text, "error": None}
        summary, problems_text, figure, problems = view(pretrained(text), state)
        assert problems == [] and figure is not None
        assert total_in(summary) == estimate.count_parameters(config)["total"]
    assert estimate.count_parameters(two)["total"] != estimate.count_parameters(five)["total"]


def test_uncached_hub_id_offline_shows_the_message_on_the_field(cache):
    state = model_tab.check_hub_id("pretrained", " nobody/missing@v2 ")
    assert state["text"] == "nobody/missing@v2"
    assert "not in the local Hugging Face cache" in state["error"] and "HF_HUB_OFFLINE" in state["error"]
    assert "revision v2" in state["error"] and str(cache) in state["error"]
    summary, problems_text, figure, problems = view(pretrained("nobody/missing@v2"), state)
    assert figure is None and "model.name_or_path" in problems_text
    flagged, updates = model_tab.field_updates(problems, [], model_tab.PATHS, [None] * len(model_tab.PATHS))
    assert flagged == ["model.name_or_path"]
    info = updates[model_tab.PATHS.index("model.name_or_path")]["info"]
    assert info.startswith("⚠") and "not in the local Hugging Face cache" in info
    # the person edits the id: the old fetch's error no longer applies to the field
    assert model_tab.hub_problems(state, pretrained("nobody/other")) == []
    # nothing is fetched for a scratch model, a local folder or a run reference
    for source, text in (("scratch", "nobody/missing"), ("pretrained", "assets"), ("pretrained", "run:x")):
        assert model_tab.check_hub_id(source, text)["error"] is None


def test_online_fetches_config_json_alone(cache, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    config, asked = tiny_config(3), []

    def download(repo, filename, revision=None, cache_dir=None, **kw):
        # stands in for the hub: writes what hf_hub_download writes, and records the ask
        asked.append((repo, filename, revision))
        snapshot = put_in_cache(Path(cache_dir), "model", repo, {filename: json.dumps(config).encode()}, COMMIT_A)
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    summary, *_ = view(pretrained("org/fresh"))
    assert "not in the local hub cache" in summary and "press Enter" in summary  # before the fetch
    state = model_tab.check_hub_id("pretrained", "org/fresh")
    assert state["error"] is None and asked == [("org/fresh", "config.json", None)]
    summary, _, figure, problems = view(pretrained("org/fresh"), state)
    assert problems == [] and total_in(summary) == estimate.count_parameters(config)["total"]


def test_published_preset_size_without_download_and_rope_context(cache):
    choices = dict((v, k) for k, v in model_tab.hub_preset_choices())
    assert choices["qwen2.5-0.5b"] == "Qwen2.5-0.5B · 0.49B"
    assert "qwen2.5-0.5b" not in model_tab.scratch_presets() and "llama-100m" in model_tab.scratch_presets()
    assert len(choices) == len(model_presets())
    updates = dict(zip(model_tab.PATHS, model_tab.preset_updates("qwen2.5-0.5b")))
    assert updates["model.source"]["value"] == "pretrained"
    assert updates["model.name_or_path"]["value"] == "Qwen/Qwen2.5-0.5B"
    # offline with an empty cache: the preset's config answers, nothing is fetched
    assert model_tab.check_hub_id("pretrained", "Qwen/Qwen2.5-0.5B")["error"] is None
    summary, _, figure, _ = view(pretrained("Qwen/Qwen2.5-0.5B"))
    assert total_in(summary) == 494_032_768 and "(494.03M · 0.49B)" in summary and figure is not None
    assert "<span id='context-tokens'>32,768</span>" in summary
    summary, _, _, problems = view(pretrained("Qwen/Qwen2.5-0.5B", rope_scaling="yarn", rope_factor=2.0))
    assert problems == [] and total_in(summary) == 494_032_768
    assert "<span id='context-tokens'>65,536</span>" in summary and "yarn ×2 of the native 32,768" in summary
    # a factor missing is reported on its own field
    _, text, figure, problems = view(pretrained("Qwen/Qwen2.5-0.5B", rope_scaling="yarn"))
    assert [f for f, _ in problems] == ["model.rope_factor"]
