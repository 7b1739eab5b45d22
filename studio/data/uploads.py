"""What the browser's uploads may be and where they go: safe names, a size limit, and
saving beside the runs folder (the studio's data directory), never over another file.

Kept out of the UI so the rule is one place, testable without a browser."""
from __future__ import annotations

import filecmp
import os
import re
import shutil
from pathlib import Path

from studio.data.errors import DataError
from studio.data.shares import oversampled, weight_by_size
from studio.data.sources import FILE_SUFFIXES, uploads_dir

UPLOAD_LIMIT_ENV = "STUDIO_MAX_UPLOAD_MB"
DEFAULT_UPLOAD_MB = 200


def upload_limit_bytes() -> int:
    try:
        mb = float(os.environ.get(UPLOAD_LIMIT_ENV) or DEFAULT_UPLOAD_MB)
    except ValueError:
        mb = DEFAULT_UPLOAD_MB
    return int(mb * 1_000_000)


def safe_name(name: str) -> str:
    """A file name safe to create in the uploads folder: no folders, no odd characters,
    a data-file suffix the readers know."""
    base = Path(str(name).replace("\\", "/")).name
    suffix = Path(base).suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError("upload", f"'{base}' is not a data file; upload one of {', '.join(FILE_SUFFIXES)}")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(base).stem).strip("._-")[:80] or "upload"
    return stem + suffix


def save_upload(tmp_path: str, original_name: str | None = None, runs_dir: str | Path | None = None) -> Path:
    """Copy an uploaded file into uploads_dir(runs_dir); an identical file already there
    is reused, a different one with the same name gets a -2, -3 ... suffix."""
    src = Path(tmp_path)
    name = safe_name(original_name or src.name)
    size, limit = src.stat().st_size, upload_limit_bytes()
    if size > limit:
        raise DataError("upload", f"'{name}' is {size / 1e6:.1f} MB, over the {limit / 1e6:g} MB upload limit; "
                        f"put it under a data folder and add that to STUDIO_DATA_ROOTS, or raise {UPLOAD_LIMIT_ENV}")
    folder = uploads_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    dest, k = folder / name, 2
    while dest.exists() and not filecmp.cmp(src, dest, shallow=False):
        dest, k = folder / f"{stem}-{k}{suffix}", k + 1
    if not dest.exists():
        part = dest.with_name(dest.name + ".part")  # never leave half a file under the real name
        shutil.copyfile(src, part)
        os.replace(part, dest)
    return dest


def share_note(name: str, rows: int, weights: list[float], other_rows: int | None) -> str:
    """What a new source's weight does to the blend: its share is weight / sum(weights)
    (studio.data.preview's requested share), whatever its size; and the weight that would
    make its share its size's (None rows elsewhere: hub or streamed sources, not counted)."""
    total = sum(weights)
    share = weights[-1] / total if total else 1.0
    text = f"`{name}`: {rows} rows, **{share:.0%} of the blend** at weight {weights[-1]:g}"
    if other_rows and rows and len(weights) > 1:
        by_size = rows / (rows + other_rows)
        if oversampled(share, by_size):
            suggest = weight_by_size(rows, other_rows, total - weights[-1])
            text += (f" (a source's share follows its weight, not its size: its rows repeat about "
                     f"{share / by_size:.0f}x as often as the others'). By size it would be {by_size:.1%}: "
                     f"**suggested weight {suggest:.3g}**.")
    return text + "."
