"""The bench report: machine, rows, the recommendation; as a table, JSON and a latency-vs-error PNG."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError

DEFAULT_TOP1 = 0.99
ERROR_FLOOR = 1e-9  # where an exact row (the reference itself) sits on the plot's log axis


def _variant(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["engine"], row["dtype"], row["layout"]


def recommend(rows: list[dict[str, Any]], min_top1: float = DEFAULT_TOP1,
              max_rel_err: float | None = None) -> dict[str, Any] | None:
    """The fastest variant within the fidelity bound: lowest geometric mean of its medians over the batches,
    among variants that ran at every batch with top-1 agreement >= ``min_top1`` (and error <= ``max_rel_err``)."""
    batches = {r["batch"] for r in rows}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_variant(row), []).append(row)
    best: tuple[float, tuple[str, str, str], list[dict[str, Any]]] | None = None
    for variant, group in groups.items():
        if {r["batch"] for r in group if r["status"] == "ok"} != batches:
            continue
        if any(r["top1_agreement"] is None or r["top1_agreement"] < min_top1 or not math.isfinite(r["max_rel_err"])
               for r in group):  # a non-finite error (overflow, NaN) is never faithful
            continue
        if max_rel_err is not None and any(r["max_rel_err"] > max_rel_err for r in group):
            continue
        score = math.exp(sum(math.log(r["median_ms"]) for r in group) / len(group))
        if best is None or score < best[0]:
            best = (score, variant, group)
    if best is None:
        return None
    engine, dtype, layout = best[1]
    return {"engine": engine, "dtype": dtype, "layout": layout,
            "median_ms": {str(r["batch"]): r["median_ms"] for r in sorted(best[2], key=lambda r: r["batch"])},
            "top1_agreement": min(r["top1_agreement"] for r in best[2]),
            "max_rel_err": max(r["max_rel_err"] for r in best[2])}


@dataclass
class BenchReport:
    machine: dict[str, Any]
    rows: list[dict[str, Any]]
    recommended: dict[str, Any] | None
    skipped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": self.settings, "rows": self.rows,
                "recommended": self.recommended, "skipped": self.skipped}

    def to_json(self, path: str | os.PathLike) -> None:
        from ..io.atomic import atomic_output

        with atomic_output(Path(path), overwrite=True, suffix=".json") as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def table(self) -> str:
        m = self.machine
        lines = [f"{m['cpu']}: {m['cores']} cores, {m['threads']} threads; features: {', '.join(m['features'])}; "
                 f"load average {m['load_average'][0]:.1f}",
                 f"{self.settings.get('spec')} at {'x'.join(map(str, self.settings.get('size', [])))}, fidelity on "
                 f"{self.settings.get('images')} against our float32 torch model", "",
                 f"{'engine':<17}{'dtype':<9}{'layout':<14}{'batch':>5} {'median ms':>10} {'min-max':>17} "
                 f"{'img/s':>8} {'max rel err':>11} {'top-1':>7}"]
        for r in self.rows:
            head = f"{r['engine']:<17}{r['dtype']:<9}{r['layout']:<14}{r['batch']:>5} "
            if r["status"] != "ok":
                lines.append(head + f"{r['status']}: {r.get('error', '')}"[:200])
                continue
            err = "-" if r["max_rel_err"] is None else f"{r['max_rel_err']:.2e}"
            top1 = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.1%}"
            lines.append(head + f"{r['median_ms']:>10.2f} {r['min_ms']:>8.2f}-{r['max_ms']:<8.2f} "
                                f"{r['images_per_s']:>8.1f} {err:>11} {top1:>7}")
        for engine, reason in self.skipped.items():
            lines.append(f"{engine:<17}skipped: {reason}")
        bound = self.settings.get("bound", {})
        rule = f"top-1 agreement >= {bound.get('min_top1', DEFAULT_TOP1):.0%}" + (
            f", max rel err <= {bound['max_rel_err']:g}" if bound.get("max_rel_err") is not None else "")
        rec = self.recommended
        lines.append("")
        lines.append(f"recommended ({rule}): " + (
            f"{rec['engine']} {rec['dtype']} {rec['layout']} "
            + ", ".join(f"batch {b}: {ms:.2f} ms" for b, ms in rec["median_ms"].items()) if rec
            else "none: no variant ran at every batch within the bound"))
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> None:
        """Latency (median, log) against max relative error (log), one panel per batch size."""
        try:
            import matplotlib
        except ImportError:
            raise MissingDependencyError("--plot needs matplotlib: pip install 'resnet-core[plot]'") from None
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        bound = self.settings.get("bound", {}).get("min_top1", DEFAULT_TOP1)
        batches = sorted({r["batch"] for r in self.rows})
        fig, axes = plt.subplots(1, len(batches), figsize=(6.0 * len(batches), 4.6), squeeze=False)
        engines = sorted({r["engine"] for r in self.rows})
        colours = {e: plt.get_cmap("tab10")(i % 10) for i, e in enumerate(engines)}
        for ax, batch in zip(axes[0], batches, strict=True):
            for r in (r for r in self.rows if r["batch"] == batch and r["status"] == "ok"):
                err = max(r["max_rel_err"] or 0.0, ERROR_FLOOR)
                faithful = (r["top1_agreement"] or 0.0) >= bound
                ax.scatter(r["median_ms"], err, s=50, color=colours[r["engine"]],
                           facecolors=colours[r["engine"]] if faithful else "none")
                ax.annotate(f"{r['engine']} {r['dtype']}" + (" cl" if r["layout"] == "channels_last" else ""),
                            (r["median_ms"], err), fontsize=7, xytext=(4, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("median latency, ms")
            ax.set_ylabel("max relative error of the logits vs fp32 torch")
            ax.set_title(f"batch {batch} (hollow: top-1 agreement < {bound:.0%})", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        fig.suptitle(f"{self.settings.get('spec')} on {self.machine['cpu']}", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
