"""GGUF export end to end on a quickstart run: converted by llama.cpp's converter,
quantised by its quantiser, loaded in its runtime and compared token by token with the
transformers model on 20 held-out prompts; served over the OpenAI API from the file.

Needs the GGUF parts `bash scripts/setup.sh --dev` installs (llama-cpp-python built
from source + the converter it vendors); without them these tests skip and say so."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from studio import export
from studio.presets import load_run
from studio.ship import gguf
from tests.conftest import run_in_process

pytestmark = [pytest.mark.slow, pytest.mark.skipif(  # slow: trains the quickstart model for ~20 s
    gguf.tools_dir() is None or gguf.runtime_version() is None,
    reason="GGUF parts not installed: `bash scripts/setup.sh --gguf` builds them (make test runs setup --dev, "
           "which does)")]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    """The quickstart recipe, shortened (its loss is well down by 120 steps): the model
    a person gets from the studio's first click."""
    spec = load_run("quickstart").with_overrides(["train.max_steps=120", "train.eval_every=0"])
    return run_in_process(spec, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def exported(quickstart_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "quick"
    lines = export.export(str(quickstart_run), out, merge_adapter=True, gguf="q8_0")
    return out, lines


def test_q8_0_export_loads_in_llama_cpp_and_agrees_with_the_model(exported):
    out, lines = exported
    made = out / "model-q8_0.gguf"
    assert made.is_file() and made.read_bytes()[:4] == b"GGUF"
    parity = json.loads((out / "model-q8_0.gguf.parity.json").read_text())
    print(f"\nq8_0 parity: {parity}")
    assert parity["prompts"] == 20 and parity["tokens"] >= 20
    assert parity["agreement"] >= 0.95, parity
    # llama.cpp formats (template from the file) and tokenises every prompt as the studio does
    assert parity["template_matches"] == 1.0 and parity["tokenizer_matches"] == 1.0 and parity["eos_matches"]
    assert any(line.startswith("parity: ") for line in lines) and any("ollama create" in line for line in lines)
    assert (out / "Modelfile").read_text().startswith("FROM ./model-q8_0.gguf\n")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no temporary file left"


def test_the_file_carries_the_chat_template_and_stop_token(exported):
    from transformers import AutoTokenizer

    from studio.ship.engine import GGUFBackend

    out, _ = exported
    backend = GGUFBackend(out / "model-q8_0.gguf")
    tok = AutoTokenizer.from_pretrained(out)
    meta = backend.llama.metadata
    assert "{% generation" not in meta["tokenizer.chat_template"].replace("{%-", "{%")
    assert int(meta["tokenizer.ggml.eos_token_id"]) == tok.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.ggml.pre"] == "smollm"  # named from tokenizer.json's configuration
    conv = [{"role": "system", "content": "Add."}, {"role": "user", "content": "What is 2 + 2?"}]
    assert backend.chat_prompt(conv) == tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)


def test_q4_k_m_is_quantised_by_llama_cpp_and_reports_its_agreement(exported):
    out, _ = exported
    report = gguf.ship(out, "q4_k_m")
    made = Path(report["gguf"])
    print(f"\nq4_k_m parity: {report['parity']}")
    assert made.name == "model-q4_k_m.gguf" and made.stat().st_size < (out / "model-q8_0.gguf").stat().st_size
    assert report["parity"]["tokenizer_matches"] == 1.0 and 0 <= report["parity"]["agreement"] <= 1
    assert report["parity"]["agreement"] >= 0.5, report["parity"]  # a 4-bit copy of a 1M model still follows it


def test_studio_serve_answers_from_the_gguf(exported):
    openai = pytest.importorskip("openai")
    from studio.ship.cli import ServerThread
    from studio.ship.engine import GGUFBackend, Params
    from studio.ship.openai_server import Served, create_app

    out, _ = exported
    path = str(out / "model-q8_0.gguf")
    srv = ServerThread(create_app(Served({"quick": path}))).start()
    try:
        client = openai.OpenAI(base_url=srv.url, api_key="none", max_retries=0)
        chunks = client.chat.completions.create(model="quick", messages=[{"role": "user", "content": "What is 7 + 9?"}],
                                                temperature=0, max_tokens=16, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finally:
        srv.stop()
    direct = GGUFBackend(path)
    prompt = direct.chat_prompt([{"role": "user", "content": "What is 7 + 9?"}])
    ids = list(direct.token_ids(direct.tokenize(prompt), Params(max_tokens=16, temperature=0), __import__("threading").Event()))
    assert text and text == direct.llama.detokenize(ids).decode()


def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".gguf", ".tmp") or p.name.startswith("."))


def test_an_architecture_the_converter_lacks_is_refused_and_nothing_is_left(exported, tmp_path):
    out, _ = exported
    odd = tmp_path / "odd"
    shutil.copytree(out, odd, ignore=shutil.ignore_patterns("*.gguf", "*.json.tmp", "Modelfile", "*.parity.json"))
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["StudioExperimentalForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(gguf.GGUFError, match="does not support the architecture StudioExperimentalForCausalLM"):
        gguf.write(odd, odd / "model-f16.gguf", "f16")
    assert _left_behind(odd) == []


def test_types_the_runtime_lacks_and_a_full_disk_are_refused_before_work(exported, tmp_path, monkeypatch):
    import llama_cpp

    out, _ = exported
    with pytest.raises(gguf.GGUFError, match="'q3_weird' is not one of .*q4_k_m"):
        gguf.check_ready("q3_weird")
    monkeypatch.delattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_Q5_K_M")
    with pytest.raises(gguf.GGUFError, match="has no q5_k_m quantiser; choose one of .*q4_k_m"):
        gguf.write(out, tmp_path / "m.gguf", "q5_k_m")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 1 << 20))
    with pytest.raises(gguf.GGUFError, match="not enough space on disk"):
        gguf.write(out, tmp_path / "m.gguf", "f16")
    assert os.listdir(tmp_path) == []
