"""The one error type the data layer raises: it names the spec field and the fix."""
from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be used for this run; `field` is the spec path (e.g.
    "data.sources.1") so the UI can put the message next to the right widget."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
