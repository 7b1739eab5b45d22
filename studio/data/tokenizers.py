"""Tokenizers the UI counts tokens with (the data preview), loaded from local files only
and kept in one small cache for the whole server: every browser session shares it, so
it is guarded by a lock (two previews at once neither load one twice nor evict while
another reads the dict)."""
from __future__ import annotations

import threading
from pathlib import Path

CAPACITY = 4
REPO_ROOT = Path(__file__).resolve().parents[2]
_CACHE: dict[str, object] = {}
_LOCK = threading.Lock()


def where_for(spec) -> str:
    """The folder the Model tab's tokenizer is read from ("" when none is set): a model
    folder, its final/ for a run folder, or the tokenizer field."""
    m = spec.model
    where = (m.name_or_path if m.source == "pretrained" and m.name_or_path else m.tokenizer) or ""
    for candidate in (Path(where).expanduser(), REPO_ROOT / where) if where else ():
        if candidate.is_dir():
            final = candidate / "final"
            return str(final if not (candidate / "tokenizer_config.json").exists() and final.is_dir() else candidate)
    return where


def tokenizer_for(spec) -> tuple[object | None, str]:
    """(tokenizer, where) from local files only (never a download from the UI); (None,
    why) when it cannot be had, and lengths are then counted in characters."""
    where = where_for(spec)
    if not where:
        return None, "no tokenizer set on the Model tab"
    with _LOCK:
        if where in _CACHE:
            return _CACHE[where], where
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(where, local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - any failure means "count characters instead"
            return None, f"tokenizer '{where}' is not available here ({type(exc).__name__})"
        if len(_CACHE) >= CAPACITY:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[where] = tok
        return tok, where
