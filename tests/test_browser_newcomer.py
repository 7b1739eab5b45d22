"""The bugs a newcomer hit in the first hour (#20.1-6), each in a real browser. Runs
are written by hand (status.json, metrics.jsonl, train.log) wherever the bug is about
what the page shows, so only the Start and Chat checks launch or load anything."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from studio import charts, jobs
from studio.presets import default_spec
from studio.ui.app import AppSettings
from tests.browser import browser, serve

pytestmark = [pytest.mark.browser]

LABEL = "document.querySelector('#run-pick input')?.value || ''"
STAND_INS: list[subprocess.Popen] = []  # live processes that pass for a fake run's worker


def stand_in_worker() -> int:
    """A sleeping process whose command line names studio.worker: jobs.status takes a run
    whose pid is not a live worker for failed."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "studio.worker"],
                            start_new_session=True)
    STAND_INS.append(proc)
    return proc.pid


def fake_run(runs, name="fake", state="running", losses=(), evals=(), summary=None, log=""):
    """A run directory as a worker leaves it; a 'running' one names a stand-in worker."""
    run_dir = jobs.create_run(default_spec().with_overrides([f"name={name}", "train.max_steps=100"]), runs)
    lines = [{"step": i + 1, "time": time.time(), "kind": "train", "loss": v} for i, v in enumerate(losses)]
    lines += [{"step": s, "time": time.time(), "kind": "eval", "eval_loss": v} for s, v in evals]
    if summary is not None:  # the trainer's closing record: train_loss is the run's average
        lines.append({"step": len(losses), "time": time.time(), "kind": "summary", "loss": summary})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / "train.log").write_text(log)
    pid = stand_in_worker() if state == "running" else None
    jobs.write_status(run_dir, state=state, pid=pid, pgid=pid, started=time.time() - 30,
                      step=len(losses), total=100, updated=time.time(),
                      ended=None if state == "running" else time.time())
    return run_dir


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    yield runs
    fakes = {p.pid for p in STAND_INS}
    for run in runs.iterdir():
        if (run / "status.json").exists() and jobs.read_status(run).get("pid") not in fakes:
            jobs.stop(run, timeout=5)
    while STAND_INS:
        proc = STAND_INS.pop()
        proc.kill()
        proc.wait()


def test_chat_without_a_model_keeps_the_message_and_says_what_to_do(runs):
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Chat").click()
        box = page.locator("#chat-input textarea")
        box.fill("What is 2 plus 2?")
        page.locator("#chat-send").click()
        page.get_by_text("Choose a model first").first.wait_for(timeout=15_000)
        page.wait_for_timeout(500)
        assert box.input_value() == "What is 2 plus 2?"
        assert page.locator("#chatbot [data-testid='user']").count() == 0


def test_buttons_follow_the_run_and_a_second_start_says_queued(runs):
    done = fake_run(runs, "done", state="completed", losses=[2.0, 1.5])
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        enabled = "id => !document.querySelector('#' + id).disabled"
        for elem_id in ("stop", "stop-save", "resume"):  # nothing watched: nothing to stop or resume
            assert not page.evaluate(enabled, elem_id), elem_id
        box = page.locator("#run-pick input")
        box.click()
        page.locator("ul[role='listbox'] li", has_text=done.name).first.click()
        page.wait_for_function("document.querySelector('#progress-info')?.dataset.state === 'completed'")
        page.wait_for_timeout(300)
        for elem_id in ("stop", "stop-save", "resume"):  # completed without a checkpoint
            assert not page.evaluate(enabled, elem_id), elem_id

        page.locator("#start").dblclick()  # one run, not two
        page.wait_for_function("document.querySelector('#train-message').innerText.includes('Started')",
                               timeout=30_000)
        page.wait_for_function(f"({enabled})('stop')", timeout=30_000)
        page.wait_for_timeout(1500)
        started = [p for p in runs.iterdir() if p.is_dir() and p != done]
        assert len(started) == 1, started
        page.wait_for_function(f"({enabled})('start')", timeout=30_000)
        page.locator("#start").click()  # a second Start while the first is going: queued, and said so
        page.wait_for_function("document.querySelector('#train-message').innerText.includes('Queued')",
                               timeout=30_000)
        assert started[0].name in page.locator("#train-message").inner_text()
        assert len([p for p in runs.iterdir() if p.is_dir() and p != done]) == 2


def test_history_shows_the_last_smoothed_train_loss_and_the_last_eval_loss(runs):
    losses = [3.0, 2.4, 1.9, 1.6, 1.4, 1.284]
    fake_run(runs, "ended", state="completed", losses=losses, evals=[(3, 1.7), (6, 1.5)], summary=2.19)
    smoothed = charts.smooth(losses, 0.6)[-1]
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        table = page.locator("#run-history")
        table.get_by_text("last train loss (smoothed)").first.wait_for(timeout=15_000)
        assert "last eval loss" in table.inner_text()
        page.wait_for_function(f"document.querySelector('#run-history').innerText.includes('{smoothed:.4f}')",
                               timeout=15_000)
        text = table.inner_text()
        assert "1.5000" in text and "2.1900" not in text  # the trainer's average is not the run's end


def test_run_label_follows_the_state_and_the_log_reads_well(runs):
    log = "\n".join([f"tokenising: {i}%" for i in range(0, 100, 5)] + [
        "lm_head.weight | MISSING | ",
        "{'loss': 1.2345, 'grad_norm': 0.5, 'learning_rate': 0.001, 'epoch': 0.1}",
        "Done. Final model in runs/x/final"])
    run = fake_run(runs, "live", state="running", losses=[2.0, 1.8], log=log)
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function(f"({LABEL}).includes('running')", timeout=30_000)  # reattached on load
        page.wait_for_function("document.querySelector('#train-log textarea').value.includes('Done.')")
        shown = page.locator("#train-log textarea")
        text = shown.input_value()
        assert "{'loss'" not in text and "loss 1.234" in text and "harmless" in text
        follows = shown.evaluate("t => t.scrollTop + t.clientHeight >= t.scrollHeight - 4")
        assert follows, shown.evaluate("t => [t.scrollTop, t.clientHeight, t.scrollHeight]")

        jobs.write_status(run, state="completed", ended=time.time(), pid=None)
        page.wait_for_function(f"({LABEL}).includes('completed')", timeout=15_000)
        page.reload()
        page.get_by_role("tab", name="Train").click()
        box = page.locator("#run-pick input")
        box.click()
        option = page.locator("ul[role='listbox'] li", has_text=run.name).first
        assert "completed" in option.inner_text() and "running" not in option.inner_text()


def test_uploads_go_beside_the_runs_and_a_tiny_one_shows_its_share(tmp_path, monkeypatch):
    from tests.test_browser_data import chats, write_jsonl

    monkeypatch.delenv("STUDIO_UPLOADS_DIR", raising=False)
    home = tmp_path / "studio"
    runs = home / "runs"
    data = tmp_path / "data"
    data.mkdir()
    big = write_jsonl(data / "big.jsonl", chats(300))
    tiny = write_jsonl(tmp_path / "tiny.jsonl", chats(6))
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\x00\x01\x02\xff" * 64)
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Data").click()
        assert str(home / "uploads") in page.locator("#data-uploads-dir").inner_text()
        sources = page.locator("#data-sources textarea")
        sources.fill(str(big))
        sources.press("Tab")
        with page.expect_file_chooser() as chooser:
            page.locator("#data-upload").click()
        chooser.value.set_files(str(tiny))
        inspected = page.locator("#data-inspect")
        inspected.get_by_text("of the blend").first.wait_for(timeout=30_000)
        text = inspected.inner_text()
        assert (home / "uploads" / "tiny.jsonl").is_file() and not (tmp_path / "uploads").exists()
        assert "6 rows" in text and "50% of the blend" in text and "suggested weight 0.02" in text, text

        with page.expect_file_chooser() as chooser:
            page.locator("#data-upload").click()
        chooser.value.set_files(str(binary))
        inspected.get_by_text("binary file").first.wait_for(timeout=30_000)
        assert "not .jsonl text" in inspected.inner_text()


def test_chat_status_is_this_pages_and_the_cache_is_called_shared(tmp_path, runs):
    from tests.test_inference import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    with serve(AppSettings(runs_dir=str(runs))) as url, browser() as b:
        a = b.new_context().new_page()
        a.goto(url)
        a.get_by_role("tab", name="Chat").click()
        a.locator("#chat-loaded").get_by_text("shared by every browser session").wait_for(timeout=15_000)
        a.locator("#chat-unload").click()  # leaves 'unloaded' on this page ...
        picker = a.locator("#chat-model-b input")
        picker.fill(str(model))
        picker.press("Enter")
        a.locator("#chat-load-b").click()  # ... which a load on the other column makes stale
        a.wait_for_function("document.querySelector('#chat-loaded').innerText.includes('on cpu')", timeout=60_000)
        a.wait_for_timeout(500)
        assert "unloaded" not in a.locator("#chat-status").inner_text().lower()

        other = b.new_context().new_page()  # another session: its own (empty) statuses, the shared list
        other.goto(url)
        other.get_by_role("tab", name="Chat").click()
        other.wait_for_function("document.querySelector('#chat-loaded').innerText.includes('on cpu')")
        assert "shared by every browser session" in other.locator("#chat-loaded").inner_text()
        assert "Loaded" not in other.locator("#chat-status-b").inner_text()
