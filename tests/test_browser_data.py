"""The Data tab in a real headless browser: two sources give a preview whose proportions
follow a changed weight, an uploaded file is copied into the uploads folder and its
format shown, and a method that needs other data names the source that does not fit.
The line/upload helpers the tab relies on are checked directly first (no browser)."""
from __future__ import annotations

import json
import os

import pytest

from studio.data import DataError, parse_source_lines
from studio.ui import data_tab

PLOT = "#data-proportions .js-plotly-plot"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chats(n):
    return [{"messages": [{"role": "user", "content": f"question {i}"},
                          {"role": "assistant", "content": "answer " * (1 + i % 7)}]} for i in range(n)]


def alpaca(n):
    return [{"instruction": f"say {i}", "input": "", "output": "word " * (3 + i % 40)} for i in range(n)]


def prefs(n):
    return [{"prompt": f"pick {i}", "chosen": "good", "rejected": "bad"} for i in range(n)]


# -- the helpers, no browser ---------------------------------------------------------------


def test_format_override_round_trips_through_the_text_start_reads():
    text = "# my mix\nA/b.jsonl | | 2  # main\n\nc.csv"
    once = data_tab.set_line_format(text, 1, "alpaca")
    assert once.splitlines()[0] == "# my mix" and once.splitlines()[3] == "c.csv | format=alpaca"
    assert [s.format for s in parse_source_lines(once)] == ["auto", "alpaca"]
    twice = data_tab.set_line_format(data_tab.set_line_format(once, 0, "messages"), 1, "auto")
    parsed = parse_source_lines(twice)
    assert [(s.path, s.weight, s.format) for s in parsed] == [("A/b.jsonl", 2.0, "messages"), ("c.csv", 1.0, "auto")]
    assert "# main" in twice.splitlines()[1]
    hub = parse_source_lines("org/set | sub | 2 | streaming=true | split=test")[0]
    assert (hub.kind, hub.subset, hub.weight, hub.split, hub.streaming) == ("hub", "sub", 2.0, "test", True)
    from studio.data.sources import format_source_lines
    assert parse_source_lines(format_source_lines(parse_source_lines(twice) + [hub])) == parse_source_lines(twice) + [hub]
    with pytest.raises(DataError, match="line 1.*format 'nope'"):
        parse_source_lines("x.jsonl | format=nope")
    assert data_tab.source_choices(twice + "\norg/hub-set | x") == [("1 · b.jsonl", 0), ("2 · c.csv", 1), ("3 · org/hub-set", 2)]
    assert data_tab.append_source(twice, "c.csv") == (twice, 1)  # not added twice
    assert data_tab.append_source("", "d.txt") == ("d.txt", 0)


def test_upload_is_sanitised_size_limited_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_UPLOADS_DIR", str(tmp_path / "up"))
    src = write_jsonl(tmp_path / "my data (v2).JSONL", chats(3))
    saved = data_tab.save_upload(str(src), "../../etc/my data (v2).JSONL")
    assert saved == tmp_path / "up" / "my_data_v2.jsonl" and saved.read_bytes() == src.read_bytes()
    assert data_tab.save_upload(str(src), "my data (v2).JSONL") == saved  # same bytes: reused
    other = write_jsonl(tmp_path / "other.jsonl", chats(4))
    assert data_tab.save_upload(str(other), "my data (v2).jsonl").name == "my_data_v2-2.jsonl"
    with pytest.raises(DataError, match="not a data file"):
        data_tab.save_upload(str(other), "run.sh")
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "0.0001")
    with pytest.raises(DataError, match="upload limit"):
        data_tab.save_upload(str(other), "big.jsonl")
    assert not (tmp_path / "up" / "big.jsonl").exists()


def test_preview_handler_reports_bad_input_instead_of_raising(tmp_path):
    values = ["a | b | lots", "interleave", "all_exhausted", 0, 0.05, None, "sft", "scratch", "",
              "assets/tokenizer", 128]
    status, fig, _, _ = data_tab.run_preview(5, *values)
    assert fig is None and "line 1" in status and "not a number" in status
    values[0] = str(tmp_path / "missing.jsonl")
    status, fig, _, _ = data_tab.run_preview(5, *values)
    assert fig is None and "source 1" in status and "does not exist" in status


# -- the browser ------------------------------------------------------------------------


def plot_series(page) -> tuple[list, list]:
    data = page.evaluate(f"document.querySelector('{PLOT}').data.map(t => t.y)")
    return list(data[0]), list(data[1])


def wait_requested(page, first: float, timeout=30_000) -> None:
    page.wait_for_function(
        f"(() => {{const g=document.querySelector('{PLOT}');"
        f" return g && g.data && g.data.length == 2 && Math.abs(g.data[0].y[0] - {first}) < 0.05}})()",
        timeout=timeout)


@pytest.mark.browser
def test_data_tab_sources_weights_upload_and_method_check(tmp_path, monkeypatch):
    from studio.ui.app import AppSettings
    from tests.browser import browser, serve

    data = tmp_path / "data"
    data.mkdir()
    shots = tmp_path / "shots"
    shots.mkdir()
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("STUDIO_DATA_ROOTS", str(data))
    monkeypatch.setenv("STUDIO_UPLOADS_DIR", str(uploads))
    a = write_jsonl(data / "chats.jsonl", chats(300))
    b = write_jsonl(data / "alpaca.jsonl", alpaca(300))
    upload = write_jsonl(tmp_path / "prefs upload.jsonl", prefs(30))
    with open(upload, "a") as fh:
        fh.write("{not json\n")

    with serve(AppSettings(runs_dir=str(tmp_path / "runs"))) as url, browser() as br:
        page = br.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url)
        page.get_by_role("tab", name="Data").click()
        box = page.locator("#data-sources textarea")
        box.fill(f"{a} | | 1\n{b} | | 1")  # the change refreshes the preview by itself
        wait_requested(page, 50.0)
        requested, achieved = plot_series(page)
        assert requested == [50.0, 50.0]
        assert abs(achieved[0] - 50) < 10 and abs(sum(achieved) - 100) < 0.5, achieved
        status = page.locator("#data-preview-status").inner_text()
        assert "sft reads conversation rows" in status and "tokens" in status, status
        table = page.locator("#data-preview-sources").inner_text()
        assert "alpaca → conversation" in table and "messages → conversation" in table
        assert page.locator("#data-preview-rows").get_by_text("alpaca.jsonl").count() > 0  # rows name their source
        page.screenshot(path=str(shots / "preview-even.png"), full_page=True)

        box.fill(f"{a} | | 3\n{b} | | 1")  # weight 1 -> 3 on the first source
        wait_requested(page, 75.0)
        requested2, achieved2 = plot_series(page)
        assert requested2 == [75.0, 25.0]
        assert achieved2[0] > achieved[0] + 15 and achieved2[1] < achieved[1] - 15, (achieved, achieved2)
        assert abs(achieved2[0] - 75) < 8, achieved2
        page.screenshot(path=str(shots / "preview-weighted.png"), full_page=True)

        with page.expect_file_chooser() as chooser:
            page.locator("#data-upload").click()
        chooser.value.set_files(str(upload))
        inspected = page.locator("#data-inspect")
        inspected.get_by_text("preference pairs").first.wait_for(timeout=30_000)
        text = inspected.inner_text()
        assert "format: preference" in text and "(detected)" in text and "bad: 1" in text, text
        assert "malformed JSON" in text and "chosen" in text  # the reason, and the normalised example
        saved = uploads / "prefs_upload.jsonl"
        assert saved.read_bytes() == upload.read_bytes()
        lines = box.input_value().splitlines()
        assert len(lines) == 3 and lines[2].endswith("prefs_upload.jsonl")
        # a third source: the preview follows (preference rows turned into conversations for SFT)
        page.wait_for_function(f"document.querySelector('{PLOT}')?.data[0].y.length == 3", timeout=30_000)
        assert "3 (preference → conversation)" in page.locator("#data-preview-status").inner_text()
        page.screenshot(path=str(shots / "upload.png"), full_page=True)

        # the format override of the picked (just uploaded) source lands on its line
        page.locator("#data-format input").first.click()
        page.get_by_role("option", name="preference: preference pairs (prompt/chosen/rejected)", exact=True).click()
        inspected.get_by_text("set by hand").wait_for(timeout=30_000)
        assert box.input_value().splitlines()[2].endswith("prefs_upload.jsonl | format=preference")

        page.get_by_role("tab", name="Method").click()
        method = page.locator("#method-name input").first
        method.click()
        page.get_by_role("option", name="dpo", exact=True).click()
        page.get_by_role("tab", name="Data").click()
        status_box = page.locator("#data-preview-status")
        status_box.get_by_text("needs preference pairs").wait_for(timeout=30_000)
        message = status_box.inner_text()
        assert f"source 1 ({a})" in message and "chat conversations" in message, message
        page.screenshot(path=str(shots / "method-mismatch.png"), full_page=True)
    assert os.listdir(shots)


# -- the sources table (#20.10) -----------------------------------------------------------------


def test_table_edits_rewrite_only_their_lines_and_each_source_is_summarised_on_its_own(tmp_path):
    from studio.data.summary import summarize_sources
    from studio.ui import data_sources_table as dst

    a = write_jsonl(tmp_path / "a.jsonl", chats(100))
    b = write_jsonl(tmp_path / "b.jsonl", alpaca(5))
    text = f"# my mix\n{a} | | 1 | format=messages  # main\n\n{b}\norg/set | sub | 2 | test\nx.jsonl | | lots"
    found = summarize_sources(text)
    assert [s["line"] for s in found] == [2, 4, 5, 6]
    assert (found[0]["format"], found[0]["rows"], found[1]["format"], found[1]["rows"]) == ("messages", 100, "alpaca", 5)
    assert "not a number" in found[3]["error"] and found[3].get("share") is None  # only its own row is broken
    assert [round(s["share"], 2) for s in found[:3]] == [0.25, 0.25, 0.5]  # weights 1, 1, 2 of the usable ones
    assert "suggest" not in found[1]  # a hub source is not counted: no size to compare with
    rows = dst.table_rows(text)
    assert rows[0][:3] == [str(a), "", "1"] and rows[2][:3] == ["org/set", "sub / test", "2"]
    assert "set by hand" in rows[0][3] and "source-error" in rows[3][3] and rows[-1][0] == ""
    assert dst.text_from_table(text, rows) == text  # nothing edited: nothing rewritten
    rows[1][2], rows[3][6], rows[-1][0] = "0.05", True, str(tmp_path / "missing.jsonl")
    new = dst.text_from_table(text, rows)
    assert new.splitlines() == ["# my mix", f"{a} | | 1 | format=messages  # main", "", f"{b} | | 0.05",
                                "org/set | sub | 2 | test", str(tmp_path / "missing.jsonl")]
    parsed = parse_source_lines(new)
    assert [(s.path, s.weight, s.split) for s in parsed][:3] == [(str(a), 1.0, "train"), (str(b), 0.05, "train"),
                                                                  ("org/set", 2.0, "test")]
    missing = summarize_sources(new)[-1]["error"]
    assert "does not exist" in missing and "upload the file" in missing
    # tiny beside big at weight 1: half the blend, and the weight that matches its size
    small = summarize_sources(f"{a}\n{b}")[1]
    assert small["share"] == 0.5 and abs(small["by_size"] - 5 / 105) < 1e-9 and abs(small["suggest"] - 0.05) < 1e-9


def test_data_tab_hands_its_widgets_to_wire_without_module_state():
    from studio.ui.app import build_app

    build_app()
    shared = [name for name, value in vars(data_tab).items()
              if not name.startswith("__") and isinstance(value, (dict, set))]
    assert shared == [], shared  # widgets travel from build() to wire() as a value, not through the module


def cell(page, row: int, col: int):
    return page.locator(f"#data-table [data-testid='cell-{row}-{col}']")


def wait_cell(page, row: int, col: int, needle: str, timeout=30_000) -> None:
    page.wait_for_function(
        f"(document.querySelector(\"#data-table [data-testid='cell-{row}-{col}']\")?.innerText || '')"
        f".includes({json.dumps(needle)})", timeout=timeout)


def edit_cell(page, row: int, col: int, value: str) -> None:
    cell(page, row, col).dblclick()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


@pytest.mark.browser
def test_sources_table_adds_weights_and_flags_a_missing_file(tmp_path, monkeypatch):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from studio.ui.app import AppSettings
    from tests.browser import browser, serve

    monkeypatch.setenv("STUDIO_UPLOADS_DIR", str(tmp_path / "uploads"))
    big = write_jsonl(tmp_path / "big.jsonl", chats(300))
    tiny = write_jsonl(tmp_path / "tiny.jsonl", alpaca(6))
    with serve(AppSettings(runs_dir=str(tmp_path / "runs"))) as url, browser() as br:
        page = br.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url)
        page.get_by_role("tab", name="Data").click()
        box = page.locator("#data-sources textarea")
        box.fill(f"# my mix\n{big} | | 1  # the main set")
        wait_cell(page, 0, 4, "300")
        assert "messages → conversation" in cell(page, 0, 3).inner_text() and cell(page, 0, 5).inner_text() == "100%"

        edit_cell(page, 1, 0, str(tiny))  # the empty last row: a second source
        wait_cell(page, 1, 4, "6")
        assert "alpaca → conversation" in cell(page, 1, 3).inner_text()
        share = cell(page, 1, 5).inner_text()
        assert share.startswith("50%") and "by size 2.0%" in share and "weight 0.02" in share, share
        assert box.input_value().splitlines() == ["# my mix", f"{big} | | 1  # the main set", str(tiny)]
        page.screenshot(path=str(tmp_path / "table-added.png"), full_page=True)

        edit_cell(page, 1, 2, "0.02")  # the weight, in the table: the text and both shares follow
        page.wait_for_function("document.querySelector('#data-sources textarea').value.endsWith('| | 0.02')",
                               timeout=30_000)
        assert box.input_value().splitlines()[1:] == [f"{big} | | 1  # the main set", f"{tiny} | | 0.02"]
        wait_cell(page, 0, 5, "98%")
        assert cell(page, 1, 5).inner_text() == "2%"

        box.fill(box.input_value() + f"\n{tmp_path / 'gone.jsonl'}")  # pasted text: a file that is not there
        wait_cell(page, 2, 3, "does not exist")
        error = cell(page, 2, 3).locator(".source-error")
        assert "upload the file" in error.inner_text()
        assert error.evaluate("e => getComputedStyle(e).color") == "rgb(220, 38, 38)"  # red, on its own row
        assert cell(page, 0, 5).inner_text() == "98%" and cell(page, 2, 5).inner_text() == ""
        page.screenshot(path=str(tmp_path / "table-missing.png"), full_page=True)

        # remove: the line goes from the text. A click that lands while the table is being
        # redrawn by the last edit's answer is lost with the old table (seen with two test
        # workers on 2 cores): click again while the line is still there
        gone = "!document.querySelector('#data-sources textarea').value.includes('gone.jsonl')"
        for attempt in range(3):
            cell(page, 2, 6).locator("input[type=checkbox]").click()
            try:
                page.wait_for_function(gone, timeout=10_000)
                break
            except PlaywrightTimeout:
                assert attempt < 2, "the removed source stayed in the text after three clicks"
        page.wait_for_function("document.querySelectorAll('#data-table .source-error').length == 0", timeout=30_000)
        assert cell(page, 2, 0).inner_text().strip() == "" and cell(page, 1, 5).inner_text() == "2%"
        assert len(parse_source_lines(box.input_value())) == 2
