"""The data layer: read sources, detect and normalise formats, blend by weight, preview.

    build(spec, kinds) -> DataBundle(train, eval, kind, report)   the worker's entry
    preview(spec, n, tokenizer=None) -> dict                       the Data tab's view
    detect_format(rows) / normalize(row, fmt)                      one file at a time
    parse_source_lines(text) -> [DataSource]                       "name | subset | weight"

Importing this package is light (no datasets/torch); those load inside the functions.
"""
from studio.data.errors import DataError
from studio.data.formats import FORMATS, KINDS, FormatGuess, detect_format, kinds_for
from studio.data.mix import DataBundle, SourceReport, build
from studio.data.normalize import convert, normalize
# Imported here, not lazily: loading the submodule studio.data.preview binds the name
# `preview` on this package to the module, and this import binds it back to the function.
from studio.data.preview import inspect_source, preview
from studio.data.sources import allowed_roots, parse_source_lines, resolve_path, uploads_dir

__all__ = [
    "DataError", "FORMATS", "KINDS", "FormatGuess", "detect_format", "kinds_for", "DataBundle",
    "SourceReport", "build", "convert", "normalize", "allowed_roots", "parse_source_lines",
    "resolve_path", "uploads_dir", "preview", "inspect_source", "add_cli",
]


def add_cli(subparsers) -> None:
    from studio.data.cli import add_cli as _add_cli

    _add_cli(subparsers)
