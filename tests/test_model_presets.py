"""Model presets of the models people fine-tune (#25.6): architecture facts as config
files in presets/models/. Each preset's size from the studio's estimate equals the model
transformers builds from the same config on the meta device, and lies within 2% of the
count its authors published; picking one fills the hub id, and the estimate works from the
preset alone (nothing downloaded, nothing cached)."""
from __future__ import annotations

import pytest
import torch

from studio import presets
from studio.estimate import count_parameters, estimate_from_source
from studio.spec import ModelSpec

WANTED = {  # what issue #25 names, by hub id
    "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-7B", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B",
    "Qwen/Qwen3-4B", "Qwen/Qwen3-8B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B",
    "meta-llama/Llama-3.1-8B", "google/gemma-2-2b", "google/gemma-3-1b-pt", "google/gemma-3-4b-pt",
    "microsoft/Phi-3-mini-4k-instruct", "microsoft/Phi-4-mini-instruct", "mistralai/Mistral-7B-v0.3",
    "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB/SmolLM2-1.7B",
}
PRESETS = presets.model_presets()


def test_every_model_the_issue_names_has_a_preset():
    assert {p["hub_id"] for p in PRESETS} == WANTED
    assert "llama-1b" not in {p["id"] for p in PRESETS}  # the scratch shapes are not hub models


def _meta_count(config: dict) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k != "model_type"}
    cfg = AutoConfig.for_model(config["model_type"], **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors once


@pytest.mark.parametrize("preset", PRESETS, ids=[p["id"] for p in PRESETS])
def test_preset_size_is_transformers_and_the_published_one(preset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: the preset is all there is
    spec = ModelSpec(source="pretrained", name_or_path=preset["hub_id"])
    counted = count_parameters(spec)["total"]
    assert counted == _meta_count(preset["config"])
    assert abs(counted - preset["params"]) <= 0.02 * preset["params"], (counted, preset["params"])


def test_picking_a_preset_fills_the_hub_id_and_estimates_without_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = presets.load_model_preset("qwen2.5-0.5b")
    assert (spec.source, spec.name_or_path) == ("pretrained", "Qwen/Qwen2.5-0.5B")
    report = estimate_from_source("qwen2.5-0.5b")
    assert report["parameters"] == 494_032_768 and report["model_type"] == "qwen2"
    assert report["memory_bytes"]["total"] > 494_032_768 * 2  # weights alone, before anything trains
