"""The hub path, offline (#25.5): a model given as org/name[@revision] and a dataset given
as `name | subset | weight` resolve from a local Hugging Face cache laid out as the hub
lays it out (built here: blobs by hash, snapshots/<commit>/ of links to them, refs/main),
with HF_HUB_OFFLINE=1 and HF_HUB_CACHE pointing at it. Nothing reaches the network."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from studio import hub
from tests.arch_models import make_family
from tests.conftest import run_in_process, spec_from

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def put_in_cache(cache: Path, kind: str, repo: str, files: dict[str, Path | bytes], commit: str,
                 ref: str | None = "main") -> Path:
    """Write repo@commit into `cache` as huggingface_hub writes it; returns the snapshot."""
    root = cache / f"{kind}s--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snapshot


def folder_files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "hf" / "hub"
    root.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return make_family("llama", tmp_path_factory.mktemp("llama") / "m")


@pytest.fixture(scope="module")
def other_llama(tmp_path_factory) -> Path:
    return make_family("llama", tmp_path_factory.mktemp("llama2") / "m", seed=1)


def _head(folder: str | Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))["lm_head.weight"]


def test_model_id_and_revision_resolve_to_their_snapshots(cache, tiny_llama, other_llama):
    from studio.model.load import resolve_model_path

    put_in_cache(cache, "model", "acme/tiny", folder_files(tiny_llama), COMMIT_A)
    put_in_cache(cache, "model", "acme/tiny", folder_files(other_llama), COMMIT_B, ref="v2")
    main, is_adapter = resolve_model_path("acme/tiny")
    assert not is_adapter and Path(main) == cache / "models--acme--tiny" / "snapshots" / COMMIT_A
    v2, _ = resolve_model_path("acme/tiny@v2")
    by_commit, _ = resolve_model_path(f"acme/tiny@{COMMIT_B}")
    assert v2 == by_commit and v2.endswith(COMMIT_B)
    assert torch.equal(_head(main), _head(tiny_llama)) and torch.equal(_head(v2), _head(other_llama))
    assert not torch.equal(_head(main), _head(v2))


def test_not_cached_offline_names_the_id_and_the_way_out(cache, tiny_llama):
    from studio.model.load import resolve_model_path

    with pytest.raises(ValueError) as err:
        resolve_model_path("acme/absent@dev")
    msg = str(err.value)
    assert msg.startswith("model.name_or_path:") and "'acme/absent' (revision dev)" in msg
    assert str(cache) in msg and "HF_HUB_OFFLINE" in msg and "hf download acme/absent --revision dev" in msg
    # only the config cached (what fetch_config leaves behind): the weights are what is missing
    put_in_cache(cache, "model", "acme/config-only", {"config.json": tiny_llama / "config.json"}, COMMIT_A)
    with pytest.raises(ValueError, match="only its config is cached"):
        resolve_model_path("acme/config-only")


def test_a_pickle_in_the_cached_snapshot_is_refused(cache, tiny_llama):
    from studio.model.load import resolve_model_path

    files = {**folder_files(tiny_llama), "pytorch_model.bin": b"not really a pickle"}
    put_in_cache(cache, "model", "acme/pickled", files, COMMIT_A)
    with pytest.raises(ValueError, match=r"pickle-format files \(pytorch_model.bin\)"):
        resolve_model_path("acme/pickled")


def test_fetch_config_reads_the_cache_and_the_estimate_uses_it(cache, tiny_llama, other_llama):
    from studio.estimate import count_parameters, read_config
    from studio.spec import ModelSpec

    config = json.loads((tiny_llama / "config.json").read_text())
    bigger = {**config, "num_hidden_layers": 3}
    put_in_cache(cache, "model", "acme/cfg", {"config.json": json.dumps(config).encode()}, COMMIT_A)
    put_in_cache(cache, "model", "acme/cfg", {"config.json": json.dumps(bigger).encode()}, COMMIT_B, ref="v2")
    assert hub.fetch_config("acme/cfg") == config
    assert hub.fetch_config("acme/cfg", revision="v2")["num_hidden_layers"] == 3
    assert read_config("acme/cfg@v2") == bigger
    from transformers import AutoModelForCausalLM

    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_llama).parameters())
    assert count_parameters(ModelSpec(source="pretrained", name_or_path="acme/cfg"))["total"] == real
    assert count_parameters(ModelSpec(source="pretrained", name_or_path="acme/cfg@v2"))["total"] > real
    with pytest.raises(hub.HubError, match=r"model 'acme/nothing' \(revision main\).*not even its config"):
        hub.fetch_config("acme/nothing")


def test_fetch_config_online_downloads_config_json_alone(cache, monkeypatch):
    """Online and not cached: one hf_hub_download, of config.json (the call is intercepted:
    tests never reach the network)."""
    import huggingface_hub

    calls = []

    def fake_download(repo, filename, revision=None, cache_dir=None, **_):
        calls.append((repo, filename, revision, cache_dir))
        path = put_in_cache(Path(cache_dir), "model", repo, {filename: b'{"model_type": "llama"}'}, COMMIT_A)
        return str(path / filename)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert hub.fetch_config("acme/online@v3") == {"model_type": "llama"}
    assert calls == [("acme/online", "config.json", "v3", str(cache))]


def test_a_hub_model_id_trains_offline_from_the_cache(cache, tiny_llama, tmp_path):
    put_in_cache(cache, "model", "acme/tiny", folder_files(tiny_llama), COMMIT_A)
    spec = spec_from(
        name="hub-offline", model={"source": "pretrained", "name_or_path": "acme/tiny", "max_seq_len": 64},
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0, "max_rows": 8},
        method={"name": "sft", "regime": "full"},
        train={"max_steps": 2, "batch_size": 2, "learning_rate": 1e-2, "log_every": 1, "warmup_steps": 0,
               "eval_every": 0, "save_every": 0})
    run = run_in_process(spec, tmp_path / "runs")
    assert not torch.equal(_head(run / "final"), _head(tiny_llama))  # it trained the cached model


# -- datasets -----------------------------------------------------------------------------

README = b"""---
configs:
- config_name: easy
  data_files:
  - split: train
    path: easy/train.jsonl
- config_name: hard
  data_files:
  - split: train
    path: hard/train.jsonl
---
# a dataset card
"""


def _rows(prefix: str, n: int) -> bytes:
    return "".join(json.dumps({"text": f"{prefix} {i}"}) + "\n" for i in range(n)).encode()


@pytest.fixture
def cached_dataset(cache) -> str:
    put_in_cache(cache, "dataset", "acme/corpus", {"README.md": README, "easy/train.jsonl": _rows("easy", 6),
                                                   "hard/train.jsonl": _rows("hard", 4)}, COMMIT_A)
    put_in_cache(cache, "dataset", "acme/corpus", {"README.md": README, "easy/train.jsonl": _rows("newer", 3),
                                                   "hard/train.jsonl": _rows("hard", 4)}, COMMIT_B, ref="v2")
    return "acme/corpus"


def _blend(lines: str, streaming: bool = False):
    from studio.data import build
    from studio.data.sources import parse_source_lines
    from studio.spec import DataSpec, MethodSpec, RunSpec

    sources = parse_source_lines(lines)
    for s in sources:
        s.streaming = s.streaming or streaming
    spec = RunSpec(data=DataSpec(sources=sources, eval_fraction=0.0), method=MethodSpec(name="pretrain"))
    return build(spec, ("text",))


def test_dataset_subset_weight_and_revision_resolve_from_the_cache(cached_dataset):
    built = _blend(f"{cached_dataset} | hard | 1\nassets/data/corpus_train.jsonl | | 1")
    texts = [r["text"] for r in built.train]
    hard = [t for t in texts if t.startswith("hard")]
    assert set(hard) == {f"hard {i}" for i in range(4)} and not any(t.startswith("easy") for t in texts)
    assert 0.4 < len(hard) / len(texts) < 0.6  # weight 1 beside the corpus' weight 1
    easy = [r["text"] for r in _blend(f"{cached_dataset} | easy | 1").train]
    newer = [r["text"] for r in _blend(f"{cached_dataset}@v2 | easy | 1").train]
    assert sorted(easy) == [f"easy {i}" for i in range(6)] and sorted(newer) == [f"newer {i}" for i in range(3)]


def test_a_cached_dataset_streams_in_the_blend(cached_dataset):
    import datasets

    built = _blend(f"{cached_dataset} | easy | 1 | streaming=true")
    assert isinstance(built.train, datasets.IterableDataset)
    assert sorted(r["text"] for r in built.train) == [f"easy {i}" for i in range(6)]


def test_a_dataset_not_cached_offline_says_so(cache):
    from studio.data.errors import DataError

    with pytest.raises(DataError) as err:
        _blend("acme/missing@dev | | 1")
    assert "'acme/missing' (revision dev)" in err.value.message and str(cache) in err.value.message
    assert "hf download acme/missing --repo-type dataset" in err.value.message
