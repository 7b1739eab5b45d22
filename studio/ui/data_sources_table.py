"""The Data tab's sources as text lines and as a table, kept in step both ways.

The text (`name | subset | weight` lines, what Start reads) stays the one value of
`data.sources`; the table is drawn from it and an edit in the table rewrites only the
lines whose cells changed, so comments and `format=`/`streaming=` cells survive. What
each source is (format, rows, share, problem) comes from studio.data.summary.
"""
from __future__ import annotations

import html
from pathlib import Path

HEADERS = ["source", "subset / split", "weight", "detected format", "rows", "share of the blend", "remove"]
DATATYPES = ["str", "str", "str", "html", "str", "str", "bool"]
STATIC_COLUMNS = [3, 4, 5]  # computed from the file, not typed
ERROR_STYLE = "color:#dc2626;font-weight:600"
TABLE_INFO = ("Edit a cell (source, subset / split, weight) or type a new source in the empty last row; "
              "tick remove to drop a source. The text below is the same list, for pasting.")


# -- the sources text, line by line ----------------------------------------------------------


def _split_comment(line: str) -> tuple[str, str]:
    body, sep, comment = line.partition("#")
    return body, sep + comment


def source_line_numbers(text: str) -> list[int]:
    """Indexes (into text.splitlines()) of the lines that are sources, in the order
    parse_source_lines numbers them (blank and comment lines skipped)."""
    out = []
    for i, line in enumerate((text or "").splitlines()):
        if not line.lstrip().startswith("#") and _split_comment(line)[0].strip():
            out.append(i)
    return out


def source_choices(text: str) -> list[tuple[str, int]]:
    """(label, index) per source for the picker; readable even when a line is not."""
    lines = (text or "").splitlines()
    names = [_split_comment(lines[i])[0].split("|")[0].strip() for i in source_line_numbers(text)]
    return [(f"{k + 1} · {Path(name).name if Path(name).suffix else name}", k) for k, name in enumerate(names)]


def set_line_format(text: str, index: int, fmt: str) -> str:
    """The sources text with source `index`'s `format=` cell set (removed for auto)."""
    lines = (text or "").splitlines()
    numbers = source_line_numbers(text)
    if not 0 <= index < len(numbers):
        return text
    body, comment = _split_comment(lines[numbers[index]])
    cells = [c.strip() for c in body.split("|")]
    cells = [c for c in cells[:1]] + [c for c in cells[1:] if not c.replace(" ", "").startswith("format=")]
    while len(cells) > 1 and not cells[-1]:
        cells.pop()
    if fmt and fmt != "auto":
        cells.append(f"format={fmt}")
    lines[numbers[index]] = " | ".join(cells).replace("|  |", "| |") + (f"  {comment}" if comment else "")
    return "\n".join(lines)


def append_source(text: str, path: str) -> tuple[str, int]:
    """The text with `path` as a new source line (not twice), and that source's index."""
    from studio.data import parse_source_lines

    try:
        known = [s.path for s in parse_source_lines(text)]
    except ValueError:
        known = []
    if path in known:
        return text, known.index(path)
    body = (text or "").rstrip("\n")
    return (body + "\n" if body else "") + path, len(source_line_numbers(text))


def line_cells(line: str) -> dict:
    """A line's editable cells as typed (name, subset, weight, split), its other
    `key=value` cells and its comment; a broken line gives its cells too."""
    body, comment = _split_comment(line)
    parts = [p.strip() for p in body.split("|")]
    options = [p for p in parts[1:] if "=" in p]
    plain = parts[:1] + [p for p in parts[1:] if "=" not in p]
    plain += [""] * (4 - len(plain))
    split = next((o.partition("=")[2].strip() for o in options if o.partition("=")[0].strip() == "split"), plain[3])
    return dict(name=plain[0], subset=plain[1], weight=plain[2] or "1", split=split or "",
                options=[o for o in options if o.partition("=")[0].strip() != "split"], comment=comment)


def _sub_split(cells: dict) -> str:
    return cells["subset"] + (f" / {cells['split']}" if cells["split"] not in ("", "train") else "")


def _weight_text(value) -> str:
    text = "" if value is None else str(value).strip()
    try:
        return f"{float(text):g}" if text else "1"
    except ValueError:
        return text  # kept as typed: the row then says it is not a number


def _line_from(cells: dict, name: str, sub_split: str, weight) -> str:
    subset, _, split = (x.strip() for x in str(sub_split or "").partition("/"))
    weight = _weight_text(weight)
    parts = [name.strip(), subset, "" if weight == "1" and not subset else weight]
    while len(parts) > 1 and not parts[-1]:
        parts.pop()
    parts += ([f"split={split}"] if split and split != "train" else []) + cells["options"]
    return " | ".join(parts).replace("|  |", "| |") + (f"  {cells['comment']}" if cells["comment"] else "")


def text_from_table(text: str, rows) -> str:
    """The sources text after a table edit: changed rows rewrite their line, ticked or
    emptied rows drop it, filled rows past the known sources add lines."""
    lines = (text or "").splitlines()
    numbers = source_line_numbers(text)
    drop, added = set(), []
    for k, row in enumerate(rows or []):
        row = list(row) + [""] * (len(HEADERS) - len(row))
        name, sub_split, weight, remove = str(row[0] or "").strip(), row[1], row[2], row[6]
        removing = remove in (True, "true", "True") or not name
        if k >= len(numbers):
            if not removing:
                added.append(_line_from(line_cells(""), name, sub_split, weight))
            continue
        if removing:
            drop.add(numbers[k])
            continue
        cells = line_cells(lines[numbers[k]])
        same = (name, str(sub_split or "").strip(), _weight_text(weight)) == (
            cells["name"], _sub_split(cells), _weight_text(cells["weight"]))
        if not same:
            lines[numbers[k]] = _line_from(cells, name, sub_split, weight)
    return "\n".join([ln for i, ln in enumerate(lines) if i not in drop] + added)


# -- the table drawn from the text ------------------------------------------------------------


def _error_cell(message: str) -> str:
    return f'<span class="source-error" style="{ERROR_STYLE}">⚠ {html.escape(message)}</span>'


def _format_cell(s: dict) -> str:
    if s.get("error"):
        return _error_cell(s["error"])
    if s.get("kind") == "hub":
        return "hub dataset (Preview reads it)"
    by_hand = s.get("format_setting") not in ("auto", "", None)
    return html.escape(f"{s['format']} → {s['kind']}" + (" (set by hand)" if by_hand else ""))


def _rows_cell(s: dict) -> str:
    if s.get("error") or s.get("rows") is None:
        return "?" if not s.get("error") else ""
    return f"{s['rows']}" + (" (streamed, first rows)" if s.get("streamed") else "") + (
        f" (+{s['bad']} bad)" if s.get("bad") else "")


def _share_cell(s: dict) -> str:
    if s.get("share") is None:
        return ""
    text = f"{s['share']:.0%}"
    if s.get("suggest") is not None:  # a tiny source at weight 1 repeats its rows many times
        text += f" (by size {s['by_size']:.1%}: weight {s['suggest']:.3g} gives that)"
    return text


def table_rows(text: str) -> list[list]:
    """One row per source line (cells as typed, then what studio.data found), and an
    empty row to type a new source into."""
    from studio.data.summary import summarize_sources

    lines = (text or "").splitlines()
    rows = []
    for s in summarize_sources(text):
        cells = line_cells(lines[s["line"] - 1])
        rows.append([cells["name"], _sub_split(cells), cells["weight"], _format_cell(s), _rows_cell(s),
                     _share_cell(s), False])
    return rows + [["", "", "", "", "", "", False]]
