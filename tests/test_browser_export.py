"""The Export tab in a real browser (#22.5): a LoRA-trained run exported as its merged
model shows the folder and its size on disk, and the folder loads with plain
transformers and equals adapter-on-base; a name in use is refused before any work; a
checkpoint exports as its adapter; GGUF q8_0 shows the parity figures of its
.parity.json and the `ollama create` command (when llama.cpp's parts are installed);
the Serve toggle starts `studio serve` on the port typed, which answers /v1/models, and
switching it off stops the process group. Hosted mode refuses a server without a key."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest

from studio.ship import export_job, gguf
from studio.ui.app import AppSettings
from tests.browser import browser, free_port, serve
from tests.test_inference import tiny_lora_run

HAVE_GGUF = gguf.tools_dir() is not None and gguf.runtime_version() is not None


def pick(page, elem_id: str, label: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=label).click()


def result_after_export(page, needle: str, timeout_ms: int = 240_000) -> str:
    """Export, then the result (an error toast fails the test at once, with its text)."""
    page.evaluate("document.querySelectorAll('.toast-body').forEach(t => t.remove())")
    page.locator("#ship-run").click()
    page.wait_for_function(f"document.querySelector('#ship-result').innerText.includes({needle!r}) || "
                           "document.querySelector('.toast-body.error')", timeout=timeout_ms)
    toast = page.locator(".toast-body.error")
    assert not toast.count(), toast.first.inner_text()
    return page.locator("#ship-result").inner_text()


def row_of(text: str, what: str) -> list[str]:
    """The cells of the result table's row `what` (result | size | where)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("\t")]
        if cells and cells[0] == what:
            return cells
    raise AssertionError(f"no '{what}' row in:\n{text}")


@pytest.mark.slow  # LoRA-trains a tiny run (~30 s CPU), merges it, and more
def test_export_tab_merged_checkpoint_gguf_and_serve(tmp_path, train_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, run_dir = tiny_lora_run(tmp_path, train_run, save_every=3)
    runs, rid = run_dir.parent, run_dir.name
    exports = runs / "exports"
    port = free_port()

    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Export").click()
        pick(page, "ship-source", f"{rid} (final)")
        page.wait_for_function(f"document.querySelector('#ship-name textarea').value === '{rid}-merged'")

        shown = result_after_export(page, "merged model")
        size, where = row_of(shown, "merged model")[1:]
        folder = exports / f"{rid}-merged"
        assert where == str(folder) and size == export_job.human(export_job.size_of(folder)), shown

        # the same name again: refused with the field and the fix, the folder untouched
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        page.locator("#ship-run").click()
        page.get_by_text("already exists; choose a new name").first.wait_for(timeout=30_000)
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before

        # a checkpoint, as its adapter
        page.get_by_text("the adapter only").click()
        pick(page, "ship-source", f"{rid} · checkpoint-3")
        page.wait_for_function(f"document.querySelector('#ship-name textarea').value === '{rid}-checkpoint-3-adapter'")
        shown = result_after_export(page, "adapter")
        assert row_of(shown, "adapter")[2] == str(exports / f"{rid}-checkpoint-3-adapter")
        assert (exports / f"{rid}-checkpoint-3-adapter" / "adapter_model.safetensors").is_file()

        if HAVE_GGUF:
            pick(page, "ship-source", f"{rid} (final)")
            page.get_by_text("GGUF for llama.cpp").click()
            page.wait_for_function(f"document.querySelector('#ship-name textarea').value === '{rid}-q8_0'")
            shown = result_after_export(page, "Parity with the transformers model", timeout_ms=600_000)
            gguf_file = exports / f"{rid}-q8_0" / "model-q8_0.gguf"
            size, where = row_of(shown, "GGUF q8_0")[1:]
            assert where == str(gguf_file) and size == export_job.human(gguf_file.stat().st_size)
            parity = json.loads(gguf_file.with_name(gguf_file.name + ".parity.json").read_text())
            assert f"{parity['agreement']:.1%} of {parity['tokens']} greedy tokens agree" in shown, shown
            assert "ollama create" in shown and (exports / f"{rid}-q8_0" / "Modelfile").is_file()
            print(f"\nExport tab GGUF q8_0 parity: {parity['agreement']:.1%} of {parity['tokens']} tokens")

        # Serve (OpenAI API): the command to copy, then the toggle runs it
        pick(page, "ship-source", f"{rid} (final)")
        box = page.locator("#ship-port input")
        box.fill(str(port))
        box.press("Tab")
        page.wait_for_function(f"document.querySelector('#ship-serve-command').innerText.includes('--port {port}')")
        assert f"python -m studio serve {rid} --port {port}" in page.locator("#ship-serve-command").inner_text()
        page.locator("#ship-serve input").check()
        page.wait_for_function("document.querySelector('#ship-serve-status').innerText.includes('Serving')",
                               timeout=180_000)
        assert f"http://127.0.0.1:{port}/v1" in page.locator("#ship-serve-status").inner_text()
        models = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30))
        assert [m["id"] for m in models["data"]], models
        pid = int(page.locator("#ship-serve-status").inner_text().split("pid ")[1].split(".")[0])
        page.locator("#ship-serve input").uncheck()
        page.wait_for_function("document.querySelector('#ship-serve-status').innerText.includes('No API server')",
                               timeout=30_000)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped and reaped, not a zombie

    merged = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    on_base = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, use_safetensors=True),
                                        run_dir / "final").eval()
    ids = torch.tensor([[5, 17, 99, 230, 7, 401]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, on_base(input_ids=ids).logits, atol=1e-4, rtol=1e-4)


def test_hosted_serve_needs_a_key_and_push_is_refused(tmp_path):
    """Without a browser: the handlers a hosted page calls refuse before starting anything."""
    from studio.ship.background import BackgroundServer
    from studio.ship.cli import ServeError

    server = BackgroundServer(str(tmp_path))
    with pytest.raises(ServeError, match="API key"):
        server.start("x", tmp_path, 8000, api_key="", hosted=True)
    with pytest.raises(ServeError, match="port"):
        server.start("x", tmp_path, 80, api_key="k")
    assert not server.running()
    with pytest.raises(export_job.ExportJobError, match="run: 'nope' is not a run"):
        export_job.check(export_job.Request(source="nope", name="out"), str(tmp_path))
    final = tmp_path / "run-1" / "final"  # a finished run, as far as the checks look
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"")
    (tmp_path / "run-1" / "spec.yaml").write_text("name: x\n")
    req = export_job.Request(source="run-1", name="out", push_to="me/model")
    with pytest.raises(export_job.ExportJobError, match="push to hub: not on this server"):
        export_job.check(req, str(tmp_path), allow_push=False)
    assert export_job.check(export_job.Request(source="run-1", name="out"), str(tmp_path))[0] == tmp_path / "run-1"
    with pytest.raises(export_job.ExportJobError, match="folder name"):
        export_job.out_folder("../escape", str(tmp_path))
