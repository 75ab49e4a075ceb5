"""The parity report: its figures (:mod:`.results`), as a table (:mod:`.text`), JSON or a plot (:mod:`.plot`).

Comparison and tolerances live in :mod:`.metrics`; the names below are re-exported for callers of this module.
"""

from __future__ import annotations

from pathlib import Path

from .metrics import (
    KINDS,
    TOLERANCES,
    bn_counts,
    compare,
    grad_tolerance,
    multiple_of,
    to_biased_running_var,
    to_unbiased_running_var,
    tolerance_for,
    topk_agreement,
)
from .results import Entry, ReportData, group_of
from .text import format_rows

__all__ = [
    "KINDS", "TOLERANCES", "Entry", "ParityReport", "bn_counts", "compare", "format_rows", "grad_tolerance",
    "group_of", "multiple_of", "to_biased_running_var", "to_unbiased_running_var", "tolerance_for",
    "topk_agreement",
]


class ParityReport(ReportData):
    """Every engine against the reference, layer by layer; ``ok`` when all are within tolerance."""

    def table(self) -> str:
        """The terminal report: per-block worst relative error of every engine against the reference."""
        from .text import table

        return table(self)

    def verdict(self) -> str:
        from .text import verdict

        return verdict(self)

    def plot(self, path: str | Path) -> None:
        """A PNG of the relative error per layer (log scale), one line per engine pair."""
        from .plot import plot

        plot(self, path)
