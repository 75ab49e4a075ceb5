"""The parity report as a PNG: relative error per layer, log scale, one line per engine (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingDependencyError
from .results import ReportData
from .text import group_rows


def plot(report: ReportData, path: str | Path) -> None:
    """A PNG of the relative error per layer (log scale), one line per engine pair."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'resnet-core[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = [(f"outputs ({report.mode})", report.layers, False)]
    if report.running_stats:
        panels.append(("running statistics (per block)", report.running_stats, True))
    if report.gradients:
        panels.append(("gradients (per block)", report.gradients, True))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8.0, 0.35 * len(report.layers) + 3), 3.6 * len(panels)),
                             squeeze=False)
    for ax, (title, entries, grouped) in zip(axes[:, 0], panels, strict=True):
        rows = group_rows(entries) if grouped else [(e.name, [e]) for e in entries]
        names = [name for name, _ in rows]
        for engine in report.compared:
            values = [max((e.engines[engine]["max_rel"] for e in group if engine in e.engines), default=float("nan"))
                      for _, group in rows]  # nan: an exported artifact has the output only
            ax.plot(range(len(names)), [max(v, 1e-12) for v in values], marker="o", ms=3,
                    label=f"{engine} vs {report.reference}")
        tol = max(m["tolerance"] for e in entries for m in e.engines.values())
        ax.axhline(tol, color="red", ls="--", lw=1, label="tolerance")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_ylabel("max |diff| / max |ref|")
        ax.set_title(f"{report.spec} {title}, {report.dtype}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
