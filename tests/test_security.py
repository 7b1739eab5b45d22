"""What a client may turn on (#17.1) and the safetensors-only rule checked per file
(#17.2).

The app is launched (in this process, on a free port) and called the way the page
calls it: by fn_index through /gradio_api/queue/join. Weight folders are decoys: a
pickle beside a harmless *.safetensors must still be refused, by the one function every
loader calls."""
from __future__ import annotations

import json
import types
from pathlib import Path

import httpx
import pytest

from studio import policy
from studio.model.load import require_checkpoint, require_safetensors, resolve_model_path
from studio.spec import RunSpec
from studio.ui.app import AppSettings
from studio.ui.form import elem_id
from tests.browser import serve
from tests.test_hosting import raw_call


# -- the app refuses what runs code unless the server allows it ---------------------------


def app_config(url: str) -> dict:
    return httpx.get(url + "/config").json()


def start_call(config: dict, **changes) -> tuple[int, list]:
    """(fn_index, data) of the Start button with the page's default values, `changes`
    (elem_id -> value) applied."""
    comps = {c["id"]: c for c in config["components"]}
    for index, dep in enumerate(config["dependencies"]):
        if dep.get("api_name") == "start":
            data = []
            for cid in dep["inputs"]:
                props = comps[cid].get("props", {})
                data.append(changes.get(props.get("elem_id"), props.get("value")))
            return index, data
    raise AssertionError("no start event")


def validation_index(config: dict) -> int:
    """The event that re-validates the form on every edit (outputs: the problems box and Start)."""
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    for index, dep in enumerate(config["dependencies"]):
        if {"problems", "start"} <= {ids.get(o) for o in dep["outputs"]}:
            return index
    raise AssertionError("no validation event")


def run_dirs(runs: Path) -> list[str]:
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def test_a_client_cannot_switch_on_remote_code(tmp_path):
    runs = tmp_path / "runs"
    with serve(AppSettings(runs_dir=str(runs))) as url:
        config = app_config(url)
        index, data = start_call(config, **{elem_id("model.trust_remote_code"): True})
        out = raw_call(url, index, data)
        assert out["success"] is False
        assert "--trust-remote-code" in json.dumps(out) and "model.trust_remote_code" in json.dumps(out), out
        assert run_dirs(runs) == [], "no run directory for a refused start"
        # the same form is flagged while it is edited, and Start is disabled
        shown = raw_call(url, validation_index(config), data)
        assert shown["success"] is True
        problems, start = shown["output"]["data"][:2]
        assert "--trust-remote-code" in json.dumps(problems) and start.get("interactive") is False
        # a reward that would import a Python file is code too
        index, data = start_call(config, **{elem_id("method.name"): "grpo", elem_id("method.reward"): "mine.py"})
        out = raw_call(url, index, data)
        assert out["success"] is False and "--trust-remote-code" in json.dumps(out), out
        assert run_dirs(runs) == []


def test_the_operator_flag_allows_it_and_a_hosted_worker_rechecks(monkeypatch):
    spec = RunSpec()
    spec.model.trust_remote_code = True
    assert policy.refusals(spec, policy.Policy(allow_remote_code=True)) == []
    assert [f for f, _ in policy.refusals(spec, policy.Policy())] == ["model.trust_remote_code"]
    # the worker of a hosted server started without the flag refuses too (the env is how it knows)
    from studio.model import load_tokenizer

    monkeypatch.setenv(policy.HOSTED_ENV, "1")
    monkeypatch.setenv(policy.REMOTE_CODE_ENV, "0")
    with pytest.raises(ValueError, match="--trust-remote-code"):
        load_tokenizer(spec.model)
    monkeypatch.setenv(policy.REMOTE_CODE_ENV, "1")
    assert load_tokenizer(spec.model).get_vocab()


# -- safetensors only, file by file ---------------------------------------------------------


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"{}" if name.endswith(".json") else b"\x80\x04decoy")
    return folder


def test_adapter_bin_beside_a_decoy_safetensors_is_refused(tmp_path):
    base = touch(tmp_path / "base", "config.json", "model.safetensors")
    adapter = touch(tmp_path / "adapter", "x.safetensors", "adapter_model.bin")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    with pytest.raises(ValueError, match=r"model\.name_or_path.*adapter_model\.bin"):
        resolve_model_path(str(adapter))
    # the same through the loader the worker and chat use: refused before peft runs torch.load
    from studio.model import build_or_load
    from studio.spec import ModelSpec

    with pytest.raises(ValueError, match="adapter_model.bin"):
        build_or_load(ModelSpec(source="pretrained", name_or_path=str(adapter)), None)
    # without any pickle but also without adapter_model.safetensors: nothing peft would read
    (adapter / "adapter_model.bin").unlink()
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        resolve_model_path(str(adapter))


@pytest.mark.parametrize("files, named", [
    (("config.json", "model.safetensors", "pytorch_model.bin"), "pytorch_model.bin"),
    (("config.json", "model.safetensors", "extra.pt"), "extra.pt"),
    (("config.json", "x.safetensors", "weights.ckpt"), "weights.ckpt"),
    (("config.json", "model.safetensors", "sub/adapter_model.bin"), "adapter_model.bin"),
    (("config.json", "x.safetensors"), "model.safetensors"),  # a decoy name transformers never reads
])
def test_model_folders_with_a_pickle_or_no_loadable_safetensors_are_refused(tmp_path, files, named):
    folder = tmp_path / "m"
    for name in files:
        touch((folder / name).parent, Path(name).name)
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        resolve_model_path(str(folder))


def test_a_sharded_index_must_name_safetensors_shards(tmp_path):
    folder = touch(tmp_path / "m", "config.json", "a.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"w1": "a.safetensors", "w2": "b.bin"}}))
    with pytest.raises(ValueError, match="b.bin"):
        require_safetensors(folder)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w1": "a.safetensors"}}))
    require_safetensors(folder)


def test_a_saved_model_with_its_training_arguments_still_loads(tmp_path):
    from tests.test_inference import save_tiny_model

    folder = save_tiny_model(tmp_path / "m")
    (folder / "training_args.bin").write_bytes(b"\x80\x04not weights")  # the Trainer writes it; nothing loads it
    assert resolve_model_path(str(folder)) == (str(folder), False)


def test_a_reward_model_with_a_pickle_is_refused(tmp_path):
    from studio.methods.reward_model import load_reward_model

    folder = touch(tmp_path / "reward", "model.safetensors", "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"],
                                                    "num_labels": 1, "model_type": "llama"}))
    with pytest.raises(ValueError, match=r"method\.reward.*pytorch_model\.bin"):
        load_reward_model("model:" + str(folder))


def resume_ctx(run_dir: Path, checkpoint: Path):
    spec = RunSpec()
    spec.train.resume_from = str(checkpoint)
    return types.SimpleNamespace(spec=spec, run_dir=run_dir)


def test_checkpoint_pickles_are_read_only_from_the_run_that_wrote_them(tmp_path):
    from studio.methods.common import resume_checkpoint

    state = ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
             "training_args.bin", "trainer_state.json")
    run = tmp_path / "runs" / "mine"
    own = touch(run / "checkpoints" / "checkpoint-6", *state)
    assert resume_checkpoint(resume_ctx(run, own)) == str(own)  # the studio wrote these: resumed
    # the same files from elsewhere (another machine, a download) are pickles the studio did not write
    foreign = touch(tmp_path / "downloaded" / "checkpoint-6", *state)
    with pytest.raises(ValueError, match=r"train\.resume_from.*optimizer\.pt.*outside this run"):
        resume_checkpoint(resume_ctx(run, foreign))
    # weights in a checkpoint follow the model rule even in the run's own folder
    touch(own, "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        resume_checkpoint(resume_ctx(run, own))
    with pytest.raises(ValueError, match="adapter_model.bin"):
        require_checkpoint(touch(run / "checkpoints" / "checkpoint-9", "adapter_config.json", "x.safetensors",
                                 "adapter_model.bin"), run)
