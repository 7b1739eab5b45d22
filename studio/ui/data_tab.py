"""Data tab: the sources (the `data.sources` text Start reads), uploads, what each source
looks like, and a live preview of the blend the chosen method will see.

Handlers only turn widgets into a spec and call studio.data; every failure becomes a
message on the page. The tokenizer for token counts loads transformers lazily, inside
the preview handler only, so importing this module stays light.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr

from studio.ui import form
from studio.ui.data_sources_table import (  # noqa: F401 - public names of this tab, kept
    DATATYPES, HEADERS, STATIC_COLUMNS, TABLE_INFO, append_source, set_line_format, source_choices,
    source_line_numbers, table_rows, text_from_table)

PATHS = ["data.sources", "data.mixing", "data.stopping_strategy", "data.seed", "data.eval_fraction",
         "data.max_rows", "data.packing", "data.assistant_only_loss"]
# What the preview reads, from this tab and the Model and Method tabs.
PREVIEW_PATHS = ["data.sources", "data.mixing", "data.stopping_strategy", "data.seed", "data.eval_fraction",
                 "data.max_rows", "method.name", "model.source", "model.name_or_path", "model.tokenizer",
                 "model.max_seq_len"]
# Changes that refresh the preview by themselves (when auto-refresh is on).
REFRESH_ON = ["data.sources", "data.mixing", "data.stopping_strategy", "data.seed", "data.max_rows",
              "method.name", "model.max_seq_len", "model.tokenizer", "model.source", "model.name_or_path"]
UPLOAD_LIMIT_ENV = "STUDIO_MAX_UPLOAD_MB"  # as studio.data.uploads
DEFAULT_UPLOAD_MB = 200
SAMPLE_CHARS = 300  # of each sampled row shown in the table
SOURCES_INFO = ("One source per line: `path or hub name | subset | weight` (subset and weight optional). "
                "Optional cells: `split=test`, `streaming=true`, `format=alpaca` (overrides detection; "
                "the format picker below writes it for you).")
REPO_ROOT = Path(__file__).resolve().parents[2]

# -- uploads (the policy is studio.data.uploads; these keep the tab's public names) ----------


def upload_limit_bytes() -> int:
    from studio.data.uploads import upload_limit_bytes as limit

    return limit()


def safe_name(name: str) -> str:
    from studio.data.uploads import safe_name as safe

    return safe(name)


def save_upload(tmp_path: str, original_name: str | None = None, runs_dir=None) -> Path:
    from studio.data.uploads import save_upload as save

    return save(tmp_path, original_name, runs_dir)


def upload_share(text: str, index: int) -> str:
    """The blend share the new source `index` gets at its weight, with a suggested weight
    when that is far above its size's share ("" when it cannot be counted)."""
    from studio.data import DataError, inspect_source, parse_source_lines
    from studio.data.uploads import share_note

    try:
        sources = parse_source_lines(text)
        rows = [inspect_source(src, i).get("ok") if src.kind != "hub" else None for i, src in enumerate(sources)]
    except (DataError, OSError, ValueError):
        return ""
    if not 0 <= index < len(sources) or not rows[index]:
        return ""
    order = [i for i in range(len(sources)) if i != index] + [index]  # share_note: the new one last
    others = [rows[i] for i in order[:-1]]
    other_rows = sum(others) if all(isinstance(r, int) for r in others) else None
    return share_note(Path(sources[index].path).name, rows[index], [sources[i].weight for i in order], other_rows)


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- what a source looks like ----------------------------------------------------------------


def _clip(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _error_md(exc: Exception, sources=None) -> str:
    """A DataError/SpecError as a message naming the source it is about."""
    field = getattr(exc, "field", "")
    message = getattr(exc, "message", None) or getattr(exc, "fix", None) or str(exc)
    while field and message.startswith(field + ": "):
        message = message[len(field) + 2:]
    m = re.match(r"data\.sources\.(\d+)", field or "")
    if m and sources is not None and int(m.group(1)) < len(sources):
        i = int(m.group(1))
        where = f"source {i + 1} (`{sources[i].path}`)"
    else:
        where = f"`{field}`" if field else type(exc).__name__
    return f"⚠️ **{where}**: {message}"


def inspect_markdown(info: dict, override: str = "auto") -> str:
    from studio.data import FORMATS

    lines = [f"**`{info['path']}`**"]
    if info.get("format") == "unknown" or not info.get("kind"):
        lines.append(f"- detected format: **unknown** — {info.get('note') or 'no known columns'}. "
                     "Pick the format below, or fix the file.")
    else:
        fmt = info["format"]
        how = "detected"
        if override not in ("auto", "", None):
            said = info.get("detected")
            how = "set by hand" + (f"; detection says {said}" if said and said != fmt else ", as detected")
        lines.append(f"- format: **{fmt}** — {FORMATS[fmt].title} ({how}) → {info['kind']} rows")
    rows = info.get("rows")
    rows_text = "streamed (first rows looked at)" if info.get("streamed") else f"{rows}"
    lines.append(f"- rows: {rows_text} · usable: {info.get('ok', 0)} · bad: {info.get('bad', 0)}")
    if info.get("columns"):
        lines.append(f"- columns: {', '.join(f'`{c}`' for c in info['columns'])}")
    if info.get("test_file"):
        lines.append(f"- held-out file: `{info['test_file']}`")
    if info.get("reasons"):
        lines.append("- bad rows: " + "; ".join(f"{r} ({n})" for r, n in info["reasons"].items()))
        lines.append("  - e.g. " + "; ".join(f"line {e['line']}: {e['reason']}" for e in info.get("examples", [])[:3]))
    if info.get("example"):
        example = "\n".join(f"{k}: {_clip(json.dumps(v, ensure_ascii=False, default=str), 400)}"
                            for k, v in info["example"].items())
        lines.append("\none normalised example:\n```text\n" + example + "\n```")
    return "\n".join(lines)


def inspect_at(text: str, index) -> tuple[str, str]:
    """(markdown about source `index` of the text, its format setting)."""
    from studio.data import DataError, inspect_source, parse_source_lines

    try:
        sources = parse_source_lines(text)
    except DataError as exc:
        return _error_md(exc), "auto"
    if index is None or not 0 <= int(index) < len(sources):
        return "Pick a source to see its format, rows and bad rows.", "auto"
    index = int(index)
    try:
        info = inspect_source(sources[index], index)
        return inspect_markdown(info, sources[index].format), sources[index].format or "auto"
    except (DataError, OSError, ValueError) as exc:
        return _error_md(exc, sources), sources[index].format or "auto"


# -- the blend preview -------------------------------------------------------------------------

def tokenizer_for(spec) -> tuple[object | None, str]:
    """The preview's tokenizer: studio.data.tokenizers' shared, locked cache."""
    from studio.data.tokenizers import tokenizer_for as shared

    return shared(spec)


def row_text(row: dict) -> str:
    """One normalised row as a short line: `role: content` turns, other fields as is."""
    parts = []
    for key, value in row.items():
        if value is None:
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict) and "role" in value[0]:
            value = " / ".join(f"{t.get('role')}: {t.get('content')}" for t in value)
        parts.append(f"{key}: {value}" if key not in ("text", "messages") else str(value))
    return _clip(" ‖ ".join(parts).replace("\n", " ⏎ "), SAMPLE_CHARS)


def proportions_figure(result: dict):
    import plotly.graph_objects as go

    names = [f"{s['index'] + 1} · {Path(s['path']).name or s['path']}"[:40] for s in result["sources"]]
    req = [round(100 * x, 1) for x in result["proportions"]["requested"]]
    got = [round(100 * x, 1) for x in result["proportions"]["achieved"]]
    fig = go.Figure([go.Bar(name="requested", x=names, y=req, text=[f"{v:g}%" for v in req]),
                     go.Bar(name="achieved", x=names, y=got, text=[f"{v:g}%" for v in got])])
    fig.update_traces(textposition="outside")
    fig.update_layout(barmode="group", height=300, margin=dict(l=40, r=10, t=40, b=40),
                      title=f"share of the blend ({result['counted_rows']} rows counted)",
                      yaxis=dict(title="%", range=[0, max(req + got + [1]) * 1.2]),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def sources_markdown(result: dict) -> str:
    unit = result["unit"]
    head = (f"| # | source | format → kind | rows | bad | requested | achieved | {unit}: mean / p50 / p90 / max "
            f"| over {result['max_seq_len']} |\n|---|---|---|---|---|---|---|---|---|")
    rows = []
    for s in result["sources"]:
        ln = s["lengths"]
        bad = f"{s['bad']}" + (f" ({_clip(next(iter(s['reasons'])), 40)}…)" if s["reasons"] else "")
        rows.append(f"| {s['index'] + 1} | `{_clip(Path(s['path']).name or s['path'], 48)}` | {s['format']} → {s['kind']} "
                    f"| {s['train_rows'] if s['train_rows'] is not None else 'streamed'} | {bad} "
                    f"| {100 * s['requested']:.1f}% | {100 * s['achieved']:.1f}% "
                    f"| {ln['mean']} / {ln['p50']} / {ln['p90']} / {ln['max']} | {ln['over_max']} |")
    return head + "\n" + "\n".join(rows)


def status_markdown(result: dict, tok_note: str) -> str:
    kinds = {s["native_kind"] for s in result["sources"]}
    converted = [f"{s['index'] + 1} ({s['native_kind']} → {s['kind']})" for s in result["sources"]
                 if s["native_kind"] != s["kind"]]
    text = (f"✅ **{result['method']}** reads **{result['kind']}** rows; "
            f"{'all sources fit' if kinds == {result['kind']} else 'sources converted: ' + ', '.join(converted)}. "
            f"{result['total_rows'] if result['total_rows'] is not None else 'streamed'} training rows, "
            f"{result['eval_rows']} eval rows, {result['mixing']}"
            f"{' (' + result['stopping_strategy'] + ')' if result['mixing'] == 'interleave' else ''}.")
    unit = result["unit"]
    text += (f"\n\nLengths in **{unit}**" + (f" ({tok_note}, {result['template']} chat template)"
                                             if unit == "tokens" else f" — {tok_note}")
             + f"; **{result['truncated']}** rows ({100 * result['truncated_fraction']:.1f}%) are longer than "
             f"max_seq_len {result['max_seq_len']} and will be truncated.")
    mask = result.get("loss_mask")  # how SFT finds the assistant's tokens, and how many train
    return text + (f"\n\n{mask['note']}" if mask and mask.get("note") else "")


def run_preview(n, *values):
    """(status, figure, per-source table, sampled rows) for the widgets' current spec;
    every failure is a message, never an exception on the page."""
    from studio.data import DataError, preview
    from studio.spec import RunSpec, SpecError

    empty = ([], ["source", "row"])
    sources = None
    try:
        spec = form.spec_from_values(PREVIEW_PATHS, list(values), base=RunSpec())
        sources = spec.data.sources
        if not sources:
            return "Add a source above to preview the blend.", None, "", _rows_update(*empty)
        tok, note = tokenizer_for(spec)
        result = preview(spec, int(n or 20), tok)
    except (DataError, SpecError) as exc:
        return _error_md(exc, sources), None, "", _rows_update(*empty)
    except Exception as exc:  # noqa: BLE001 - the page must show the problem, not break
        return f"⚠️ preview failed: {type(exc).__name__}: {_clip(exc, 500)}", None, "", _rows_update(*empty)
    rows = [[f"{r['source'] + 1} · {Path(r['path']).name or r['path']}", row_text(r["row"])]
            for r in result["rows"]]
    return (status_markdown(result, note), proportions_figure(result), sources_markdown(result),
            _rows_update(rows, ["source", "row (normalised)"]))


def _rows_update(rows, headers):
    return gr.update(value={"data": rows or [["", ""]], "headers": headers})


# -- the tab ---------------------------------------------------------------------------------


def _sources_section(spec, runs_dir) -> dict:
    """The sources table, the same list as text, uploads, and one source looked at closely."""
    from studio.data import FORMATS, uploads_dir
    from studio.data.sources import FILE_SUFFIXES

    text = form.sources_to_text(spec.data.sources)
    table = gr.Dataframe(value=table_rows(text), headers=HEADERS, datatype=DATATYPES, type="array",
                         interactive=True, static_columns=STATIC_COLUMNS, label="data sources", elem_id="data-table",
                         column_widths=["24%", "10%", "7%", "22%", "9%", "19%", "9%"], wrap=True, max_height=360)
    gr.Markdown(TABLE_INFO, elem_id="data-table-info")
    fields = form.widgets(spec, PATHS[:1], info=SOURCES_INFO)
    with gr.Row():
        upload = gr.UploadButton("Upload a data file", file_types=list(FILE_SUFFIXES), elem_id="data-upload",
                                 size="md", scale=1)
        picker = gr.Dropdown(choices=source_choices(fields["data.sources"].value), value=None, label="source",
                             elem_id="data-source-pick", scale=2)
        fmt = gr.Dropdown(choices=[("auto (detect)", "auto")] + [(f"{k}: {f.title}", k) for k, f in FORMATS.items()],
                          value="auto", label="format of this source", elem_id="data-format", scale=3,
                          info="overrides detection; written as format=… on its line")
    gr.Markdown(f"Uploads are stored in `{uploads_dir(runs_dir)}` (beside the runs folder).",
                elem_id="data-uploads-dir")
    inspected = gr.Markdown("Pick a source, or upload a file, to see its format, rows and bad rows.",
                            elem_id="data-inspect")
    return dict(fields=fields, sources=fields["data.sources"], table=table, upload=upload, picker=picker, fmt=fmt,
                inspected=inspected)


def _preview_section() -> dict:
    gr.Markdown("### Preview of the blend")
    with gr.Row(equal_height=True):
        n_rows = gr.Number(value=20, precision=0, minimum=1, maximum=500, label="rows to sample",
                           elem_id="data-preview-n", scale=1)
        auto = gr.Checkbox(value=True, label="refresh on change", elem_id="data-preview-auto", scale=1)
        button = gr.Button("Preview", variant="primary", elem_id="data-preview-btn", scale=1)
    status = gr.Markdown("Press **Preview** (or edit a source) to see the blend.", elem_id="data-preview-status")
    plot = gr.Plot(label="requested vs achieved", elem_id="data-proportions")
    table = gr.Markdown(elem_id="data-preview-sources")
    samples = gr.Dataframe(headers=["source", "row (normalised)"], value=[["", ""]], interactive=False, wrap=True,
                           label="sampled rows", elem_id="data-preview-rows", column_widths=["18%", "82%"],
                           max_height=420)
    return dict(n=n_rows, auto=auto, button=button, outputs=[status, plot, table, samples])


def build(spec, settings=None) -> dict:
    """The tab's widgets: `fields` holds its spec widgets (app.py gathers those for Start),
    the rest are what wire() attaches events to."""
    widgets = _sources_section(spec, getattr(settings, "runs_dir", None))
    with gr.Accordion("Mixing", open=True):
        with gr.Row():
            widgets["fields"].update(form.widgets(spec, PATHS[1:]))
    widgets.update(_preview_section())
    return widgets


def on_upload(file, text, runs_dir=None):
    """(text, picker, inspected, format) after copying an uploaded file into the uploads folder."""
    from studio.data import DataError

    if not file:
        return gr.update(), gr.update(), gr.update(), gr.update()
    try:
        path = save_upload(file if isinstance(file, str) else getattr(file, "name", str(file)), runs_dir=runs_dir)
    except (DataError, OSError) as exc:
        return gr.update(), gr.update(), _error_md(exc), gr.update()
    text, index = append_source(text, display_path(path))
    md, current = inspect_at(text, index)
    share = upload_share(text, index)  # a tiny file at weight 1 can be half the blend: say so
    md = f"Saved as `{path}`.\n\n" + (f"ℹ️ {share}\n\n" if share else "") + md
    return text, gr.update(choices=source_choices(text), value=index), md, current


def on_format(text, index, value):
    if index is None:
        return gr.update(), "Pick a source first: the format applies to one source."
    text = set_line_format(text, int(index), value)
    return text, inspect_at(text, index)[0]


def on_sources(text, index):
    """The picker's choices and the table, redrawn from the text (whoever changed it)."""
    choices = source_choices(text)
    keep = index if index is not None and int(index) < len(choices) else None
    return gr.update(choices=choices, value=keep), table_rows(text)


def on_table(rows, text):
    """A table edit written back into the text; its change redraws the table."""
    new = text_from_table(text, rows)
    return new if new != text else gr.update()


def on_table_select(text, evt: gr.SelectData):
    """Clicking a source's row looks at that source, as picking it does."""
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not isinstance(index, int) or index >= len(source_line_numbers(text)):
        return gr.update(), gr.update(), gr.update()
    md, current = inspect_at(text, index)
    return gr.update(value=index), md, current


def _wire_sources(w: dict, settings) -> None:
    private = dict(api_visibility="private")
    runs_dir = getattr(settings, "runs_dir", None)
    sources, picker, inspected, fmt = w["sources"], w["picker"], w["inspected"], w["fmt"]
    w["upload"].upload(lambda file, text: on_upload(file, text, runs_dir), [w["upload"], sources],
                       [sources, picker, inspected, fmt], **private)
    picker.input(inspect_at, [sources, picker], [inspected, fmt], **private)
    fmt.input(on_format, [sources, picker, fmt], [sources, inspected], **private)
    # the text is the one value: the table edits it, and every change of it redraws the table
    sources.change(on_sources, [sources, picker], [picker, w["table"]], trigger_mode="always_last",
                   show_progress="hidden", **private)
    w["table"].input(on_table, [w["table"], sources], [sources], **private)
    w["table"].select(on_table_select, [sources], [picker, inspected, fmt], **private)


def wire(demo, widgets: dict, fields: dict, settings) -> None:
    """The tab's own events, and the preview's, which read the Model and Method tabs too."""
    _wire_sources(widgets, settings)
    shown = gr.State(False)  # other tabs refresh the preview only once it has been looked at
    inputs = [widgets["n"]] + [fields[p] for p in PREVIEW_PATHS]
    outputs = widgets["outputs"] + [shown]
    queue = dict(api_visibility="private", concurrency_id="data-preview", concurrency_limit=1)

    def now(n, *values):
        return (*run_preview(n, *values), True)

    def on_change(auto_on, was_shown, own_tab, n, *values):
        if not auto_on or not (own_tab or was_shown):
            return [gr.update()] * len(outputs)
        return now(n, *values)

    widgets["button"].click(now, inputs, outputs, **queue)
    for path in REFRESH_ON:
        if path not in fields:
            continue
        own = gr.State(path.startswith("data."))
        # always_last: typing queues at most one more preview after the running one
        fields[path].change(on_change, [widgets["auto"], shown, own] + inputs, outputs, trigger_mode="always_last",
                            show_progress="minimal", **queue)
