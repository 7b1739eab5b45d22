"""Export: a LoRA run's adapter saved and merged (the merged folder loads with plain
AutoModelForCausalLM and gives the adapter-on-base logits), the hub push against a fake
hub on 127.0.0.1, GGUF detection, and the CLI."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studio import export
from studio.cli import main as cli_main
from tests.conftest import spec_from
from tests.test_inference import save_tiny_model


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A few LoRA SFT steps on a tiny random base, through the worker's code path."""
    from tests.conftest import run_in_process

    tmp = tmp_path_factory.mktemp("lora")
    base = save_tiny_model(tmp / "base")
    spec = spec_from(
        name="lora", model={"source": "pretrained", "name_or_path": str(base), "max_seq_len": 128},
        data={"sources": [{"path": "assets/data/arith_sft_train.jsonl"}], "eval_fraction": 0.0},
        method={"name": "sft", "regime": "lora", "lora_r": 8, "lora_dropout": 0.0},
        train={"max_steps": 4, "batch_size": 8, "learning_rate": 2e-2, "warmup_steps": 0, "log_every": 1},
    )
    return run_in_process(spec, tmp / "runs"), base


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.slow  # uses the LoRA run (a few training steps)
def test_merged_export_loads_plainly_and_matches_adapter_on_base(lora_run, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, base = lora_run
    assert (run_dir / "final" / "adapter_config.json").is_file()
    out = export.merge(str(run_dir), tmp_path / "merged")
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not any(n.endswith((".bin", ".pt")) for n in names) and "adapter_config.json" not in names
    assert "im_start" in (out / "chat_template.jinja").read_text() if (out / "chat_template.jinja").exists() \
        else "im_start" in json.loads((out / "tokenizer_config.json").read_text()).get("chat_template", "")

    merged = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    base_model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True).eval()
    ids = torch.tensor([[5, 17, 99, 230, 7, 401, 12, 3]])
    plain = _logits(base_model, ids)
    adapted = _logits(PeftModel.from_pretrained(base_model, run_dir / "final").eval(), ids)
    assert (adapted - plain).abs().max() > 1e-3, "the adapter learned nothing: the comparison would be vacuous"
    torch.testing.assert_close(_logits(merged, ids), adapted, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # uses the LoRA run (a few training steps)
def test_adapter_export_is_safetensors_and_a_full_model_is_refused(lora_run, tmp_path):
    run_dir, base = lora_run
    out = export.save_adapter(str(run_dir), tmp_path / "adapter")
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert not any(n.endswith(".bin") for n in names)
    with pytest.raises(export.ExportError, match="full model"):
        export.save_adapter(str(base), tmp_path / "nope")
    with pytest.raises(export.ExportError, match="not empty"):
        export.save_adapter(str(run_dir), out)


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the hub's HTTP API for create_repo + upload_folder (small files
    are committed inline, base64 in NDJSON)."""
    received: dict = {}

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host = self.headers["Host"]
        self.received.setdefault("auth", set()).add(self.headers.get("Authorization"))
        if self.path == "/api/repos/create":
            self.received["create"] = json.loads(body)
            return self._json({"url": f"http://{host}/u/tiny"})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in files]})
        if "/commit/" in self.path:
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            self.received["files"] = {x["value"]["path"]: len(x["value"]["content"]) for x in lines if x["key"] == "file"}
            return self._json({"commitUrl": f"http://{host}/u/tiny/commit/{'a' * 40}", "commitOid": "a" * 40})
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_push_uploads_only_safe_files_to_the_configured_endpoint(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # only 127.0.0.1 is reached
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    (folder / "notes.py").write_text("import os")
    assert export.prepared_upload(folder) == ["config.json", "model.safetensors"]

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = export.push(folder, "u/tiny", token="hf_fake", endpoint=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert url.endswith("/commit/" + "a" * 40)
    assert FakeHub.received["create"]["name"] == "tiny" and FakeHub.received["create"]["organization"] == "u"
    assert set(FakeHub.received["files"]) == {"config.json", "model.safetensors"}
    assert FakeHub.received["auth"] == {"Bearer hf_fake"}


def test_push_without_token_or_weights_says_how_to_fix(tmp_path, monkeypatch):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(export, "hub_token", lambda: None)
    (tmp_path / "model.safetensors").write_bytes(b"\0")
    with pytest.raises(export.ExportError, match="HF_TOKEN"):
        export.push(tmp_path, "u/tiny")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(export.ExportError, match="safetensors"):
        export.prepared_upload(pickled)


def test_gguf_is_detected_and_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("STUDIO_GGUF_TOOLS", str(tmp_path / "empty"))  # nor the converter setup.sh keeps
    assert export.gguf_converter() is None
    assert "LLAMA_CPP_DIR" in export.gguf_status()
    with pytest.raises(export.ExportError, match="LLAMA_CPP_DIR"):
        export.to_gguf(tmp_path, tmp_path / "m.gguf")
    # a stand-in converter with llama.cpp's command line: called without a shell, its file kept
    llama = tmp_path / "llama.cpp"
    llama.mkdir()
    (llama / "convert_hf_to_gguf.py").write_text(
        "import sys\nargs = sys.argv[1:]\nout = args[args.index('--outfile') + 1]\n"
        "open(out, 'wb').write(b'GGUF' + args[args.index('--outtype') + 1].encode())\n")
    monkeypatch.setenv("LLAMA_CPP_DIR", str(llama))
    assert export.gguf_converter() == llama / "convert_hf_to_gguf.py"
    made = export.to_gguf(tmp_path, tmp_path / "m; rm -rf x.gguf", "q8_0")
    assert made.read_bytes() == b"GGUFq8_0"
    with pytest.raises(export.ExportError, match="q8_0"):
        export.to_gguf(tmp_path, tmp_path / "m.gguf", "q3_weird")


@pytest.mark.slow  # uses the LoRA run (a few training steps)
def test_cli_export_merges_a_run_by_id(lora_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    run_dir, _ = lora_run
    out = tmp_path / "cli-out"
    code = cli_main(["--runs-dir", str(run_dir.parent), "export", run_dir.name, "--merge", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"merged model: {out}" in capsys.readouterr().out
    assert AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).config.vocab_size > 0
    code = cli_main(["--runs-dir", str(run_dir.parent), "export", run_dir.name, "--out", str(tmp_path / "g"),
                     "--merge", "--gguf", "q8_0"])
    err = capsys.readouterr().err
    if export.gguf_converter() is None:  # refused before the merge, with the way to enable it
        assert code == 2 and "LLAMA_CPP_DIR" in err and not (tmp_path / "g").exists()
