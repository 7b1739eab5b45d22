"""Byte sizes as people read them: one constant per binary unit and one formatter, so
every screen and message labels the same number the same way (GiB is 1024**3 bytes)."""
from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4


def human_bytes(n: float, digits: int = 2) -> str:
    """"1.50 GiB", "12.00 MiB", "512 B": the largest binary unit the size reaches."""
    for unit, size in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= size:
            return f"{n / size:.{digits}f} {unit}"
    return f"{int(n)} B"


def gib(n: float | None, digits: int = 2) -> str:
    """`n` bytes in GiB whatever its size ("0.25 GiB"), "?" when unknown: for figures read
    side by side (a need against a capacity)."""
    return "?" if n is None else f"{n / GIB:.{digits}f} GiB"
