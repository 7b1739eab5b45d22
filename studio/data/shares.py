"""The blend's share arithmetic, one place for the sources table (studio.data.summary) and
the upload note (studio.data.uploads). No imports, so the UI can use it without loading
the data pipeline."""
from __future__ import annotations


def weight_by_size(rows: int, other_rows: int, other_weight: float) -> float:
    """The weight that makes a source's share of the blend its share of the rows."""
    return other_weight * rows / other_rows


def oversampled(share: float, by_size: float) -> bool:
    """True when a source's weight gives it over twice the share its rows would: its rows
    then repeat far more often than the others', worth suggesting a weight for."""
    return share > 2 * by_size
