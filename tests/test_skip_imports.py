"""The worker leaves out peft and bitsandbytes for runs that never call them (a second or
two of every such run's start-up), and only for those: a run that may need either keeps it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from studio.skip_imports import unneeded
from tests.conftest import TINY_MODEL, spec_from

SFT_DATA = {"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0}


def spec(regime="full", optimizer="adamw", name="sft", model=None, **method):
    return spec_from(model=model or TINY_MODEL, data=SFT_DATA, method={"name": name, "regime": regime, **method},
                     train={"optimizer": optimizer})


def test_what_each_run_can_do_without(tmp_path):
    assert unneeded(spec()) == ("peft", "bitsandbytes")
    assert unneeded(spec("freeze")) == ("peft", "bitsandbytes")
    assert unneeded(spec("lora")) == ("bitsandbytes",)
    assert unneeded(spec("qlora")) == ()
    assert unneeded(spec(optimizer="adamw_8bit")) == ("peft",)
    # methods that load a second model (teacher, reward model, another reference) keep both
    for other in (dict(name="distill", teacher="x"), dict(name="grpo"), dict(name="ppo"),
                  dict(name="dpo", reference_model="x")):
        assert unneeded(spec(**other)) == (), other
    # a local full model is read; an adapter folder, a quantized one or a hub id is not hidden from
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    pretrained = {"source": "pretrained", "name_or_path": str(folder)}
    assert unneeded(spec(model=pretrained)) == ("peft", "bitsandbytes")
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"load_in_4bit": True}}))
    assert unneeded(spec(model=pretrained)) == ()
    assert unneeded(spec(model={"source": "pretrained", "name_or_path": "org/some-model"})) == ()
    (folder / "config.json").write_text("{}")
    (folder / "adapter_config.json").write_text("{}")
    assert unneeded(spec(model=pretrained)) == ()


def test_hidden_libraries_look_not_installed_to_the_training_stack():
    code = ("import sys, importlib.util; from studio.skip_imports import hide; hide('peft', 'bitsandbytes'); "
            "from trl import SFTTrainer, DPOTrainer; import transformers; "
            "from transformers.utils import is_peft_available, is_bitsandbytes_available; "
            "print(sys.modules['peft'] is None, sys.modules['bitsandbytes'] is None, "
            "is_peft_available(), is_bitsandbytes_available(), importlib.util.find_spec('peft'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "False", "False", "None"]


@pytest.mark.slow
def test_worker_trains_without_them_and_says_so(tmp_path):
    from studio import jobs

    run = spec()
    run.model.d_model, run.model.n_layers, run.model.d_ff = 64, 1, 128
    run.train.max_steps, run.train.batch_size, run.train.log_every = 3, 4, 1
    run_dir = jobs.create_run(run, tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "studio.worker", str(run_dir)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert jobs.read_status(run_dir)["state"] == "completed"
    assert "Not loading peft, bitsandbytes: this run does not use them" in proc.stdout
    assert (run_dir / "final" / "model.safetensors").is_file()
